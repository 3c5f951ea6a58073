Feature: X-Unique
  X-Unique: true with an X-UserId closes every other open session of that user; the session
  whose answer carried it survives. The closed sessions cannot come back with the same identity.

  @UNIQ-01 @UNIQ-03 @must
  Scenario: X-Unique closes the user's other sessions and keeps the new one
    Given a stream "s" with on_play auth
    And the backend allows token "t1" as user "u1" with X-Unique and X-AuthDuration 60
    When viewer "A" from 127.0.0.2 plays "s" over the target's protocol with token "t1"
    And viewer "B" from 127.0.0.3 plays "s" over the target's protocol with token "t1"
    Then viewer "B" is playing
    When viewer "A" plays again
    Then viewer "A" is denied
    When viewer "B" plays again
    Then viewer "B" is playing
    And at most 1 session of user "u1" is open

  @UNIQ-05 @should
  Scenario Outline: X-Unique: <value> is ignored
    Given a stream "s" with on_play auth
    And the backend allows token "t1" as user "u1" with X-Unique <value> and X-AuthDuration 60
    When viewer "A" from 127.0.0.2 plays "s" over the target's protocol with token "t1"
    And viewer "B" from 127.0.0.3 plays "s" over the target's protocol with token "t1"
    And viewer "A" plays again
    And viewer "B" plays again
    Then viewer "A" is playing
    And viewer "B" is playing
    And the backend was asked 2 times for token "t1"

    Examples:
      | value |
      | yes   |
      | 1     |
      | false |
