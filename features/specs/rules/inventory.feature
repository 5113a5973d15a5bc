Feature: Inventory
  Stock is reserved for an order all at once or not at all, deducted when the
  order completes, and restored when it is cancelled or its reservation
  expires. Available and reserved stock never go negative, every change is in
  the audit trail, and for every product
  initial + restocked + adjusted = available + reserved + deducted.

  Background:
    Given the products
      | product | stock |
      | MUG     | 10    |
      | PEN     | 2     |

  Scenario: A reservation takes every line or none
    When order "o-1" reserves
      | product | quantity |
      | MUG     | 3        |
      | PEN     | 5        |
    Then the stock is short of "PEN": 5 requested, 2 available
    And "MUG" has 10 available and 0 reserved
    And "PEN" has 2 available and 0 reserved

  Scenario: Reserve, then complete
    When order "o-1" reserves 3 of "MUG"
    Then "MUG" has 7 available and 3 reserved
    When order "o-1" completes
    Then "MUG" has 7 available and 0 reserved
    And the movements of "MUG" are
      | kind    | quantity | order |
      | initial | 10       |       |
      | reserve | 3        | o-1   |
      | deduct  | 3        | o-1   |
    And stock is conserved

  Scenario: A cancelled order gives its stock back
    When order "o-1" reserves 3 of "MUG"
    And order "o-1" is cancelled
    Then "MUG" has 10 available and 0 reserved
    And the last movement of "MUG" is a restore of 3

  Scenario: An expired reservation gives its stock back
    When order "o-1" reserves 2 of "PEN"
    And the reservation of order "o-1" expires
    Then "PEN" has 2 available and 0 reserved
    And the last movement of "PEN" is a expire of 2

  Scenario: A second reserve for the same order changes nothing
    When order "o-1" reserves 3 of "MUG"
    And order "o-1" reserves 3 of "MUG"
    Then "MUG" has 7 available and 3 reserved

  Scenario: A cancel that overtakes its reservation
    When order "o-1" is cancelled
    And order "o-1" reserves 3 of "MUG"
    Then "MUG" has 10 available and 0 reserved

  Scenario: Two orders race for the last units
    When order "o-1" reserves 2 of "PEN"
    And order "o-2" reserves 1 of "PEN"
    Then the stock is short of "PEN": 1 requested, 0 available
    And "PEN" has 0 available and 2 reserved

  Scenario: Adjustments never make stock negative
    When "PEN" is adjusted by -3 because "broken in transit"
    Then it is refused: "product PEN has 2 available; a change of -3 would make it negative"
    When "PEN" is adjusted by -2 because "broken in transit"
    Then "PEN" has 0 available and 0 reserved
    And the last movement of "PEN" is a adjust of -2

  Scenario: Restocking and a busy day keep the books balanced
    When "MUG" is restocked with 5
    And order "o-1" reserves 4 of "MUG"
    And order "o-2" reserves 6 of "MUG"
    And order "o-1" completes
    And order "o-2" is cancelled
    And "MUG" is adjusted by 1 because "found one"
    Then "MUG" has 12 available and 0 reserved
    And stock is conserved
