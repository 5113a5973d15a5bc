Feature: A rule author tries a policy on live traffic, then lets it decide
  A new version of a rule is published to the whole deployment in shadow:
  it answers beside the active rules on every order, its disagreements are
  counted and kept, and it decides nothing. Promoted, it decides; rolled
  back, the rules before it decide again. Here the deployment is one
  embedded shop; the author publishes over the API and promotes and rolls
  back with `shop rules`.

  Background:
    Given a shop running embedded
    And the admin has registered "MUG" at 1200 KRW with 100 in stock

  Scenario: A policy in shadow refuses nothing, and its disagreements are counted
    When the admin publishes the purchase-limit policy in shadow
    Then the shop runs purchase-limit version 1 in shadow
    When alice orders 12 of "MUG"
    Then the answer is 202 and the order is PENDING
    And the shop counted 1 disagreement of purchase-limit version 1
    And `shop rules diff purchase-limit` shows alice's order

  Scenario: Promoted, the policy decides; rolled back, it is gone
    When the admin publishes the purchase-limit policy in shadow
    And the author runs `shop rules promote purchase-limit`
    Then the shop runs purchase-limit version 1 as active
    When alice orders 12 of "MUG"
    Then the answer is 422 naming the field "items"
    When the author runs `shop rules rollback purchase-limit`
    Then the shop runs no purchase-limit
    When alice orders 12 of "MUG"
    Then the answer is 202 and the order is PENDING
