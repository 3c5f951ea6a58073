@needs-rtmp
Feature: Playing over RTMP
  An RTMP connection is its session (SESS-07): the backend is asked when the play starts, the
  session is re-checked in the background while the connection lives, and a deny, a kick or
  X-Unique ends it by closing the connection.

  Background:
    Given a stream "s" with on_play auth

  @RESP-01 @REQ-02 @must
  Scenario: An allowed RTMP viewer plays, and the backend hears of it as proto rtmp
    Given the backend allows token "t1" with X-AuthDuration 60
    When viewer "A" from 127.0.0.2 plays "s" over RTMP with token "t1"
    Then viewer "A" is playing
    And the backend was asked 1 time for token "t1"
    And the backend's new_session call for token "t1" carried
      | parameter    | value       |
      | proto        | rtmp      |
      | name         | stream "s"  |
      | ip           | 127.0.0.2   |
      | token        | t1          |
      | request_type | new_session |
      | session_id   | a UUID      |

  @RESP-02 @must
  Scenario: A denied RTMP viewer is refused
    Given the backend denies token "t1"
    When viewer "A" from 127.0.0.2 plays "s" over RTMP with token "t1"
    Then viewer "A" is refused
    And the backend was asked 1 time for token "t1"

  @TIME-02 @TIME-05 @must
  Scenario: A running RTMP play is re-checked in the background
    Given the backend allows token "t1" with X-AuthDuration 1
    When viewer "A" from 127.0.0.2 plays "s" over RTMP with token "t1"
    Then viewer "A" is playing
    And the backend receives an update_session call for token "t1" within 3 seconds of its new_session call
    And the backend's update_session call for token "t1" came 1 to 3 seconds after its new_session call
    And viewer "A" is still receiving media

  @TIME-05 @RESP-02 @BAN-03 @must
  Scenario: A running RTMP play is closed when its background re-check is denied
    Given the backend allows token "t1" with X-AuthDuration 1
    When viewer "A" from 127.0.0.2 plays "s" over RTMP with token "t1"
    Then viewer "A" is playing
    When the backend now denies token "t1"
    Then viewer "A" is disconnected within 4 seconds
    And the backend was asked 1 time for token "t1" with request_type "update_session"

  @LIM-02 @LIM-01 @must
  Scenario: A user never keeps more RTMP connections open than X-Max-Sessions
    Given the backend allows token "t1" as user "u1" with X-Max-Sessions 2 and X-AuthDuration 60
    When viewer "A" from 127.0.0.2 plays "s" over RTMP with token "t1"
    And viewer "B" from 127.0.0.3 plays "s" over RTMP with token "t1"
    And viewer "C" from 127.0.0.4 plays "s" over RTMP with token "t1"
    Then at most 2 of viewers "A", "B" and "C" are still connected within 2 seconds
    And the backend was asked 3 times for token "t1"

  @UNIQ-01 @must
  Scenario: X-Unique closes the same user's other RTMP connection and keeps the new one
    Given the backend allows token "t1" as user "u1" with X-Unique and X-AuthDuration 60
    When viewer "A" from 127.0.0.2 plays "s" over RTMP with token "t1"
    And viewer "B" from 127.0.0.3 plays "s" over RTMP with token "t1"
    Then viewer "B" is playing
    And viewer "A" is disconnected within 2 seconds
    And viewer "B" is still receiving media

  @UNIQ-01 @must
  Scenario: An HLS viewer's X-Unique answer closes the same user's RTMP connection
    Given the backend allows token "t1" as user "u1" with X-Unique and X-AuthDuration 60
    When viewer "A" from 127.0.0.2 plays "s" over RTMP with token "t1"
    And viewer "B" from 127.0.0.3 plays "s" over HLS with token "t1"
    Then viewer "B" is playing
    And viewer "A" is disconnected within 2 seconds
    And the backend was asked 2 times for token "t1"

  @SESS-07 @must @needs-sessions-api
  Scenario: An RTMP session ends when its connection ends
    Given the backend allows every token with X-AuthDuration 60
    When viewer "A" from 127.0.0.2 plays "s" over RTMP with token "t1"
    Then viewer "A" is playing
    And the server lists 1 open session of stream "s"
    When viewer "A" leaves
    Then the server lists 0 open sessions of stream "s" within 2 seconds
