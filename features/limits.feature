Feature: Per-user session limit (X-Max-Sessions)
  X-Max-Sessions N caps the open sessions of one X-UserId, across streams. The reference server
  cuts the oldest sessions (AMB-1); the spec only requires that no more than N stay open.

  @LIM-02 @LIM-01 @must
  Scenario: A user never keeps more open sessions than X-Max-Sessions
    Given a stream "s" with on_play auth
    And the backend allows token "t1" as user "u1" with X-Max-Sessions 2 and X-AuthDuration 60
    When viewer "A" from 127.0.0.2 plays "s" over the target's protocol with token "t1"
    And viewer "B" from 127.0.0.3 plays "s" over the target's protocol with token "t1"
    And viewer "C" from 127.0.0.4 plays "s" over the target's protocol with token "t1"
    Then at most 2 sessions of user "u1" are open
    When viewer "A" plays again
    And viewer "B" plays again
    And viewer "C" plays again
    Then exactly 2 of viewers "A", "B" and "C" are playing
    And at most 2 sessions of user "u1" are open

  @LIM-02 @LIM-04 @BAN-02 @should
  Scenario: The oldest session is cut and refused on its next request; the newer two play
    Given a stream "s" with on_play auth
    And the backend allows token "t1" as user "u1" with X-Max-Sessions 2 and X-AuthDuration 60
    When viewer "A" from 127.0.0.2 plays "s" over the target's protocol with token "t1"
    And viewer "B" from 127.0.0.3 plays "s" over the target's protocol with token "t1"
    And viewer "C" from 127.0.0.4 plays "s" over the target's protocol with token "t1"
    Then viewer "C" is playing
    When viewer "A" plays again
    Then viewer "A" is denied
    When viewer "B" plays again
    And viewer "C" plays again
    Then viewer "B" is playing
    And viewer "C" is playing
    And the backend was asked 3 times for token "t1"

  @LIM-03 @must
  Scenario: The limit counts sessions across streams
    Given a stream "s1" with on_play auth
    And a stream "s2" with on_play auth
    And a stream "s3" with on_play auth
    And the backend allows token "t1" as user "u1" with X-Max-Sessions 2 and X-AuthDuration 60
    When viewer "A" from 127.0.0.2 plays "s1" over the target's protocol with token "t1"
    And viewer "B" from 127.0.0.2 plays "s2" over the target's protocol with token "t1"
    And viewer "C" from 127.0.0.2 plays "s3" over the target's protocol with token "t1"
    And viewer "A" plays again
    And viewer "B" plays again
    And viewer "C" plays again
    Then exactly 2 of viewers "A", "B" and "C" are playing
    And at most 2 sessions of user "u1" are open

  @LIM-06 @AMB-15 @should
  Scenario: The stream's max_sessions caps a user whose answer names no X-Max-Sessions
    Given a stream "s" with on_play auth and max_sessions 1
    And the backend allows token "t1" as user "u1" with X-AuthDuration 60
    When viewer "A" from 127.0.0.2 plays "s" over the target's protocol with token "t1"
    And viewer "B" from 127.0.0.3 plays "s" over the target's protocol with token "t1"
    Then viewer "B" is playing
    And at most 1 session of user "u1" is open
    When viewer "A" plays again
    Then viewer "A" is denied
    And the backend was asked 2 times for token "t1"

  @LIM-06 @AMB-15 @should
  Scenario: X-Max-Sessions in the answer wins over the stream's max_sessions
    Given a stream "s" with on_play auth and max_sessions 1
    And the backend allows token "t1" as user "u1" with X-Max-Sessions 2 and X-AuthDuration 60
    When viewer "A" from 127.0.0.2 plays "s" over the target's protocol with token "t1"
    And viewer "B" from 127.0.0.3 plays "s" over the target's protocol with token "t1"
    And viewer "A" plays again
    And viewer "B" plays again
    Then viewer "A" is playing
    And viewer "B" is playing
    And the backend was asked 2 times for token "t1"

  @LIM-01 @AMB-7 @info
  Scenario Outline: A user id and <limit> given in the answer's JSON body limit the user as the headers do
    Given a stream "s" with on_play auth
    And the backend allows token "t1" with X-AuthDuration 600 and body <body>
    And the backend allows token "t2" with X-AuthDuration 600 and body <body>
    When viewer "A" from 127.0.0.2 plays "s" over MPEG-TS with token "t1"
    And viewer "B" from 127.0.0.3 plays "s" over MPEG-TS with token "t2"
    Then viewer "B" is playing
    And viewer "A" is disconnected within 3 seconds
    And the backend was asked 1 time for token "t1"
    And the backend was asked 1 time for token "t2"

    Examples:
      | limit              | body                              |
      | a session cap of 1 | {"user_id":"u1","max_sessions":1} |
      | X-Unique's twin    | {"user_id":"u1","unique":true}    |

  @LIM-01 @info
  Scenario: X-Max-Sessions 0 sets no limit
    Given a stream "s" with on_play auth
    And the backend allows token "t1" as user "u1" with X-Max-Sessions 0 and X-AuthDuration 600
    When viewer "A" from 127.0.0.2 plays "s" over MPEG-TS with token "t1"
    And viewer "B" from 127.0.0.3 plays "s" over MPEG-TS with token "t1"
    Then viewer "B" is playing
    And viewer "A" is still receiving media
    And the backend was asked 2 times for token "t1"

  @LIM-01 @AMB-24 @info
  Scenario: A re-check allowed without X-UserId keeps the session's user and its limit
    Given a stream "s" with on_play auth
    And the backend allows token "t1" as user "u1" with X-Max-Sessions 1 and X-AuthDuration 1
    When viewer "A" from 127.0.0.2 plays "s" over MPEG-TS with token "t1"
    And the backend now allows token "t1" with X-AuthDuration 600
    Then the backend receives an update_session call for token "t1" within 3 seconds of its new_session call
    When the backend allows token "t2" as user "u1" with X-Max-Sessions 1 and X-AuthDuration 600
    And viewer "B" from 127.0.0.3 plays "s" over MPEG-TS with token "t2"
    Then viewer "B" is playing
    And viewer "A" is disconnected within 3 seconds

  @LIM-05 @AMB-3 @info
  Scenario: With soft_limitation a session over the limit is not cut at once
    Given a stream "s" with on_play auth and soft_limitation
    And the backend allows token "t1" as user "u1" with X-Max-Sessions 1 and X-AuthDuration 600
    When viewer "A" from 127.0.0.2 plays "s" over MPEG-TS with token "t1"
    And viewer "B" from 127.0.0.3 plays "s" over MPEG-TS with token "t1"
    Then viewer "B" is playing
    And viewer "A" is still receiving media
    And the backend was asked 2 times for token "t1"

  @LIM-05 @AMB-3 @info @slow
  Scenario: With soft_limitation a session over the limit is cut once the grace has passed
    Given a stream "s" with on_play auth and soft_limitation
    And the backend allows token "t1" as user "u1" with X-Max-Sessions 1 and X-AuthDuration 600
    When viewer "A" from 127.0.0.2 plays "s" over MPEG-TS with token "t1"
    And viewer "B" from 127.0.0.3 plays "s" over MPEG-TS with token "t1"
    Then viewer "B" is playing
    And viewer "A" is still receiving media
    And viewer "A" is disconnected within 100 seconds
    And viewer "B" is still receiving media

  # Users u1 and u2 go over their limit one after the other. u1 is back under it before its
  # grace ends (B leaves); u2 is not. u2's older session being cut marks u1's grace as over
  # too, without a fixed wait.
  @LIM-05 @AMB-3 @info @slow
  Scenario: With soft_limitation a user back under the limit when the grace ends keeps its session
    Given a stream "s" with on_play auth and soft_limitation
    And the backend allows token "t1" as user "u1" with X-Max-Sessions 1 and X-AuthDuration 600
    And the backend allows token "t2" as user "u2" with X-Max-Sessions 1 and X-AuthDuration 600
    When viewer "A" from 127.0.0.2 plays "s" over MPEG-TS with token "t1"
    And viewer "B" from 127.0.0.3 plays "s" over MPEG-TS with token "t1"
    And viewer "C" from 127.0.0.4 plays "s" over MPEG-TS with token "t2"
    And viewer "D" from 127.0.0.5 plays "s" over MPEG-TS with token "t2"
    Then viewer "B" is playing
    And viewer "D" is playing
    When viewer "B" leaves
    Then viewer "C" is disconnected within 100 seconds
    And viewer "A" is still receiving media
    And viewer "D" is still receiving media

  @LIM-02 @BAN-02 @AMB-1 @should
  Scenario: A re-check answered after its session was cut does not bring the session back
    Given a stream "s" with on_play auth
    And the backend allows token "t1" as user "u1" with X-Max-Sessions 1 and X-AuthDuration 1
    When viewer "A" from 127.0.0.2 plays "s" over MPEG-TS with token "t1"
    And the backend now allows token "t1" as user "u1" with X-Max-Sessions 1 and X-AuthDuration 60 and a delay of 2.5 seconds
    Then the backend receives an update_session call for token "t1" within 3 seconds of its new_session call
    When the backend allows token "t2" as user "u1" with X-Max-Sessions 1 and X-AuthDuration 60
    And viewer "B" from 127.0.0.3 plays "s" over MPEG-TS with token "t2"
    Then viewer "A" is disconnected within 2 seconds
    When viewer "B" plays again 2.5 seconds later
    Then viewer "B" is playing
    When viewer "A2" from 127.0.0.2 plays "s" over MPEG-TS with token "t1"
    Then viewer "A2" is refused
    And the backend was asked 1 time for token "t1" with request_type "update_session"

  @LIM-02 @AMB-1 @must
  Scenario: A user's session limit never closes another user's session
    Sessions of one user come, are cut and are forgotten; when that user's limit is enforced
    again, only that user's open sessions are counted and cut, never another user's.
    Given a stream "s" with on_play auth
    And the backend allows token "t1" as user "u1" with X-Max-Sessions 1 and X-AuthDuration 1
    And the backend allows token "t2" as user "u1" with X-Max-Sessions 1 and X-AuthDuration 1
    When viewer "A" from 127.0.0.2 plays "s" over MPEG-TS with token "t1"
    And viewer "B" from 127.0.0.3 plays "s" over MPEG-TS with token "t2"
    Then viewer "A" is disconnected within 2 seconds
    When 3 seconds pass
    And the backend allows token "t3" as user "u2" with X-Max-Sessions 1 and X-AuthDuration 60
    And viewer "C" from 127.0.0.4 plays "s" over MPEG-TS with token "t3"
    And the backend allows token "t4" as user "u1" with X-Max-Sessions 1 and X-AuthDuration 60
    And viewer "D" from 127.0.0.5 plays "s" over MPEG-TS with token "t4"
    Then viewer "D" is playing
    And viewer "C" is still receiving media

  @LIM-01 @LIM-02 @RESP-01 @should
  Scenario: A re-check that names another user moves the session under that user's limit
    Given a stream "s" with on_play auth
    And the backend allows token "t1" as user "u1" with X-AuthDuration 1
    When viewer "A" from 127.0.0.2 plays "s" over MPEG-TS with token "t1"
    And the backend now allows token "t1" as user "u2" with X-Max-Sessions 1 and X-AuthDuration 60
    And viewer "A" plays again after the auth duration has passed
    Then viewer "A" is playing
    When the backend allows token "t2" as user "u2" with X-Max-Sessions 1 and X-AuthDuration 60
    And viewer "B" from 127.0.0.3 plays "s" over MPEG-TS with token "t2"
    Then viewer "B" is playing
    And viewer "B" is still receiving media
    When viewer "A2" from 127.0.0.2 plays "s" over MPEG-TS with token "t1"
    Then viewer "A2" is refused
