Feature: The order saga between the Order and Inventory contexts
  An order is accepted at once and reserved later: the inventory context
  hears of it over JetStream, reserves all of its lines or none, and the
  order context confirms or cancels it. Every accepted order ends CONFIRMED,
  COMPLETED or CANCELLED, and the stock is exact whatever the concurrency.
  These scenarios run both contexts on PostgreSQL, NATS JetStream and Redis.

  Scenario: An order is confirmed, paid, and its stock deducted
    Given a running shop
    And the product "MUG" with 5 units in stock
    When a customer orders 2 of "MUG"
    Then the order is accepted as PENDING
    And the order becomes CONFIRMED
    And "MUG" has 3 available, 2 reserved and 0 deducted
    When the payment for the order is confirmed
    Then the order becomes COMPLETED
    And "MUG" has 3 available, 0 reserved and 2 deducted

  Scenario: One short line cancels the whole order and reserves nothing
    Given a running shop
    And the product "MUG" with 5 units in stock
    And the product "PLATE" with 10 units in stock
    When a customer orders 2 of "PLATE" and 6 of "MUG"
    Then the order becomes CANCELLED because of insufficient_stock
    And "PLATE" has 10 available, 0 reserved and 0 deducted
    And "MUG" has 5 available, 0 reserved and 0 deducted

  Scenario: An unpaid reservation expires and its stock comes back
    Given a running shop whose reservations expire after 300 milliseconds
    And the product "MUG" with 5 units in stock
    When a customer orders 2 of "MUG"
    Then the order becomes CONFIRMED
    When the reservation has outlived its time and the expiry runs
    Then the order becomes CANCELLED because of reservation_expired
    And "MUG" has 5 available, 0 reserved and 0 deducted

  Scenario: A flash sale sells exactly the stock there is
    Given a running shop
    And the product "MUG" with 5 units in stock
    When 40 customers each order 1 of "MUG" at once
    Then 5 orders end CONFIRMED and 35 end CANCELLED
    And "MUG" has 0 available, 5 reserved and 0 deducted

  Scenario: A redelivered order event reserves nothing twice
    Given a running shop
    And the product "MUG" with 5 units in stock
    When a customer orders 2 of "MUG"
    Then the order becomes CONFIRMED
    When inventory receives the order's OrderCreated again
    Then "MUG" has 3 available, 2 reserved and 0 deducted
