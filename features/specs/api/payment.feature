Feature: Payment through a provider
  With SHOP_PAYMENT_URL set, a confirmed order is paid through the payment
  provider: the shop asks it for an intent, and the provider answers at the
  shop's webhook with a signed notice. Paid orders complete and their stock
  is deducted; a declined or unanswered payment cancels the order with
  PAYMENT_FAILED and puts its stock back. These scenarios run the shop
  embedded, with the provider simulator of `shop payment-sim`.

  Scenario: An approved payment completes the order and deducts its stock
    Given a shop running embedded with a payment provider that approves
    And the admin has registered "MUG" at 1200 KRW with 10 in stock
    When alice orders 2 of "MUG"
    Then alice's order becomes COMPLETED
    And "MUG" shows 8 available and 0 reserved

  Scenario: A declined payment cancels the order and restores its stock
    Given a shop running embedded with a payment provider that declines
    And the admin has registered "MUG" at 1200 KRW with 10 in stock
    When alice orders 2 of "MUG"
    Then alice's order becomes CANCELLED because of PAYMENT_FAILED
    And "MUG" shows 10 available and 0 reserved

  Scenario: A payment nobody answers times out
    Given a shop running embedded with a payment provider that stays silent
    And the admin has registered "MUG" at 1200 KRW with 10 in stock
    When alice orders 3 of "MUG"
    Then alice's order becomes CONFIRMED
    And alice's order becomes CANCELLED because of PAYMENT_FAILED
    And "MUG" shows 10 available and 0 reserved

  Scenario: A notice signed with another secret changes nothing
    Given a shop running embedded with a payment provider that stays silent
    And the admin has registered "MUG" at 1200 KRW with 10 in stock
    When alice orders 1 of "MUG"
    Then alice's order becomes CONFIRMED
    When a forger says alice's payment succeeded
    Then the answer is 403 with a problem body
    And alice's order is still CONFIRMED
