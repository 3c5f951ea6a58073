Feature: Wiring a backend to a stream
  A stream without on_play lets everyone play without asking any backend (CFG-05); the
  streams beside it that have on_play are still guarded.

  @CFG-05 @must
  Scenario: Without on_play everyone plays and no backend is asked
    Given a stream "open" without authorization
    And a stream "s" with on_play auth
    And the backend denies every token
    When viewer "A" from 127.0.0.2 plays "open" over HLS with token "t1"
    And viewer "B" from 127.0.0.3 plays "open" over MPEG-TS without a token
    And viewer "C" from 127.0.0.4 plays "s" over HLS with token "t1"
    Then viewer "A" is playing
    And viewer "B" is playing
    And viewer "C" is denied
    And the backend was asked 1 time

  @CFG-05 @API-01 @should
  Scenario: A viewer refused before the stream lost its on_play then plays as a session of that stream
    Given a stream "s" with on_play auth
    And the backend denies token "t1" with X-AuthDuration 60
    When viewer "A" from 127.0.0.2 plays "s" over MPEG-TS with token "t1"
    Then viewer "A" is denied
    When the operator puts stream "s" without authorization
    And viewer "A" plays again
    Then viewer "A" is playing
    And the server lists 1 open session of stream "s"
    And the backend was asked 1 time for token "t1"

  @CFG-05 @info
  Scenario: A stream that gets on_play through the API closes the MPEG-TS viewers it admitted without one
    Given a stream "s" without authorization
    And the backend allows token "t1"
    When viewer "A" from 127.0.0.2 plays "s" over MPEG-TS with token "t1"
    Then viewer "A" is playing
    When the operator puts stream "s" with on_play auth
    Then viewer "A" is disconnected within 2 seconds
    When viewer "A" plays again
    Then viewer "A" is playing
    And the backend was asked 1 time for token "t1" with request_type "new_session"

  @CFG-05 @info
  Scenario Outline: A stream put again <how> leaves the viewers it admitted playing
    Given <stream>
    And the backend allows token "t1" with X-AuthDuration 600
    When viewer "A" from 127.0.0.2 plays "s" over MPEG-TS with token "t1"
    Then viewer "A" is playing
    When the operator puts stream "s" <put>
    And 1.5 seconds pass
    Then viewer "A" is still receiving media
    And the backend was asked <calls> for token "t1"

    Examples:
      | how                                      | stream                                 | put                   | calls   |
      | with the on_play that admitted them      | a stream "s" with on_play auth         | with on_play auth     | 1 time  |
      | with on_publish only                     | a stream "s" without authorization     | with on_publish auth  | 0 times |
      | still without authorization              | a stream "s" without authorization     | without authorization | 0 times |

  @CFG-05 @should
  Scenario: Giving one stream a backend through the API leaves another stream's viewers playing
    Given a stream "open" without authorization
    And a stream "s" without authorization
    When viewer "A" from 127.0.0.2 plays "open" over MPEG-TS with token "t1"
    Then viewer "A" is playing
    When the operator puts stream "s" with on_play auth
    And 1 second passes
    Then viewer "A" is still receiving media
