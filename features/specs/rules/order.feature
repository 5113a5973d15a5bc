Feature: Orders
  A customer places an order against the catalogue. Prices are frozen when
  the order is placed, and an order's status only ever moves forward:
  PENDING -> CONFIRMED -> COMPLETED, or PENDING -> CANCELLED, and a confirmed
  order whose reservation runs out is cancelled by the system.

  Background:
    Given the catalogue lists
      | product | price | currency |
      | SKU-1   | 1200  | KRW      |
      | SKU-2   | 500   | KRW      |
      | USD-1   | 9     | USD      |

  Scenario: An order freezes catalogue prices and derives its total
    When customer "alice" orders
      | product | quantity |
      | SKU-1   | 2        |
      | SKU-2   | 1        |
    Then the order is PENDING
    And the order total is 2900 KRW
    When the catalogue price of "SKU-1" becomes 9900
    Then the order line for "SKU-1" still costs 1200
    And the order total is 2900 KRW

  Scenario: An order needs at least one item
    When customer "alice" orders nothing
    Then it is refused: "an order needs at least one item"

  Scenario Outline: Every quantity must be positive and bounded
    When customer "alice" orders <quantity> of "SKU-1"
    Then it is refused: "<reason>"

    Examples:
      | quantity | reason                                                  |
      | 0        | line 0 (product SKU-1): quantity must be positive       |
      | -3       | line 0 (product SKU-1): quantity must be positive       |
      | 10001    | line 0 (product SKU-1): quantity must be at most 10000  |

  Scenario: Only catalogue products in one currency
    When customer "alice" orders 1 of "GHOST"
    Then it is refused: "line 0 (product GHOST): no such product in the catalogue"
    When customer "alice" orders
      | product | quantity |
      | SKU-1   | 1        |
      | USD-1   | 1        |
    Then it is refused: "line 1 (product USD-1): priced in another currency than the first item"

  Scenario: Status moves forward only
    Given customer "alice" has a PENDING order for 1 of "SKU-1"
    When the stock is reserved
    Then the order is CONFIRMED
    When the payment is confirmed
    Then the order is COMPLETED
    When the stock is reserved
    Then it is refused: "an order cannot go from COMPLETED to CONFIRMED"
    And the order is COMPLETED

  Scenario: A pending order cannot complete
    Given customer "alice" has a PENDING order for 1 of "SKU-1"
    When the payment is confirmed
    Then it is refused: "an order cannot go from PENDING to COMPLETED"

  Scenario: A customer cancels before confirmation
    Given customer "alice" has a PENDING order for 1 of "SKU-1"
    When the customer cancels
    Then the order is CANCELLED because "customer"
    When the stock is reserved
    Then it is refused: "an order cannot go from CANCELLED to CONFIRMED"

  Scenario: A customer cannot cancel a confirmed order
    Given customer "alice" has a CONFIRMED order for 1 of "SKU-1"
    When the customer cancels
    Then it is refused: "an order that is CONFIRMED can no longer be cancelled"
    And the order is CONFIRMED

  Scenario: Missing stock cancels the order
    Given customer "alice" has a PENDING order for 1 of "SKU-1"
    When the stock turns out to be insufficient
    Then the order is CANCELLED because "insufficient_stock"

  Scenario: A reservation expires thirty minutes after confirmation
    Given customer "alice" has a CONFIRMED order for 1 of "SKU-1"
    When 29 minutes pass
    And the system expires the reservation
    Then it is refused: "the reservation expires in 60000 ms"
    When 1 minute passes
    And the system expires the reservation
    Then the order is CANCELLED because "reservation_expired"

  Scenario: Repeated messages change nothing
    Given customer "alice" has a CONFIRMED order for 1 of "SKU-1"
    When the stock is reserved
    Then nothing happens
    And the order is CONFIRMED
