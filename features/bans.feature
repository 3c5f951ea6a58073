Feature: Denials are remembered (negative caching)
  A denial is kept in memory for the identity: further attempts are refused locally, without a
  backend call, for the 403's X-AuthDuration (default 180 s).

  Background:
    Given a stream "s" with on_play auth

  @BAN-01 @RESP-02 @must
  Scenario: A second attempt inside the ban makes no backend call
    Given the backend denies token "bad"
    When viewer "A" from 127.0.0.2 plays "s" over the target's protocol with token "bad"
    And viewer "A" plays again
    Then viewer "A" is denied
    And the backend was asked 1 time for token "bad"

  @BAN-05 @should
  Scenario: A denial with X-AuthDuration 1 is asked again once that second has passed
    Given the backend denies token "bad" with X-AuthDuration 1
    When viewer "A" from 127.0.0.2 plays "s" over the target's protocol with token "bad"
    And viewer "A" plays again
    And viewer "A" plays again after the auth duration has passed
    Then viewer "A" is denied
    And the backend was asked 2 times for token "bad"
