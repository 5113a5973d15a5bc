Feature: Ordering through the REST API
  A customer orders over HTTP with a bearer token. The answer comes at once
  and says PENDING; the reservation follows through the saga a moment later.
  These scenarios run the shop binary itself, embedded on SQLite.

  Background:
    Given a shop running embedded
    And the admin has registered "MUG" at 1200 KRW with 10 in stock

  Scenario: An order is accepted at once and confirmed soon after
    When alice orders 2 of "MUG"
    Then the answer is 202 and the order is PENDING
    And alice's order becomes CONFIRMED
    And "MUG" shows 8 available and 2 reserved

  Scenario: A retry with the same Idempotency-Key creates nothing new
    When alice orders 1 of "MUG" with Idempotency-Key "basket-7"
    And alice orders 1 of "MUG" with Idempotency-Key "basket-7"
    Then alice has 1 order

  Scenario: More than there is is cancelled, and nothing is reserved
    When alice orders 11 of "MUG"
    Then alice's order becomes CANCELLED
    And "MUG" shows 10 available and 0 reserved

  Scenario: A customer cannot see another customer's order
    When alice orders 1 of "MUG"
    Then bob reading alice's order is told 404

  Scenario: Only admins register products
    When bob registers "CUP"
    Then the answer is 403 with a problem body

  Scenario Outline: Bad input is refused with the offending field named
    When alice sends the order body <body>
    Then the answer is <status> naming the field "<field>"

    Examples:
      | body                                                      | status | field             |
      | {"items":[{"product_id":"MUG","quantity":0}]}             | 422    | items[0].quantity |
      | {"items":[{"product_id":"MUG","quantity":-1}]}            | 422    | items[0].quantity |
      | {"items":[{"product_id":"MUG","quantity":"two"}]}         | 422    | items[0].quantity |
      | {"items":[{"product_id":"NOPE","quantity":1}]}            | 422    | items[0].product_id |
      | {"items":[]}                                              | 422    | items             |
