Feature: Rechecks after the auth duration
  X-AuthDuration N makes a decision fresh for N seconds. HLS sessions are re-checked on the
  first request after that (the request waits for the answer); persistent connections such as
  HTTP MPEG-TS and RTMP are re-checked in the background. Over a persistent protocol, "plays
  again after the auth duration has passed" keeps the running connection through that re-check
  and reads what the server did with it.

  Background:
    Given a stream "s" with on_play auth

  @TIME-02 @REQ-01 @SESS-05 @AMB-12 @must
  Scenario: After X-AuthDuration 1 the next request is an update_session of the same session
    Given the backend allows token "t1" with X-AuthDuration 1
    When viewer "A" from 127.0.0.2 plays "s" over the target's protocol with token "t1"
    And viewer "A" plays again after the auth duration has passed
    Then viewer "A" is playing
    And the backend was asked 1 time for token "t1" with request_type "new_session"
    And the backend was asked 1 time for token "t1" with request_type "update_session"
    And the backend's update_session call for token "t1" came 1 to 3 seconds after its new_session call
    And the backend's calls for token "t1" kept one session_id with request_number rising by 1

  @TIME-02 @TIME-05 @must
  Scenario: A running MPEG-TS session is re-checked in the background
    Given the backend allows token "t1" with X-AuthDuration 1
    When viewer "A" from 127.0.0.2 plays "s" over MPEG-TS with token "t1"
    Then viewer "A" is playing
    And the backend receives an update_session call for token "t1" within 3 seconds of its new_session call
    And the backend's update_session call for token "t1" came 1 to 3 seconds after its new_session call
    And viewer "A" is still receiving media

  @RESP-02 @TIME-05 @must
  Scenario: A running MPEG-TS session is closed when the recheck denies it
    Given the backend allows token "t1" with X-AuthDuration 1
    When viewer "A" from 127.0.0.2 plays "s" over MPEG-TS with token "t1"
    And the backend now denies token "t1"
    Then viewer "A" is disconnected within 4 seconds
    And the backend was asked 1 time for token "t1" with request_type "update_session"

  @TIME-01 @must @slow
  Scenario: Without X-AuthDuration a running session is re-checked after 3 minutes
    Given the backend allows token "t1"
    When viewer "A" from 127.0.0.2 plays "s" over MPEG-TS with token "t1"
    Then viewer "A" is playing
    And the backend receives an update_session call for token "t1" within 190 seconds of its new_session call
    And the backend's update_session call for token "t1" came 175 to 190 seconds after its new_session call

  @AMB-23 @TIME-02 @info
  Scenario Outline: An X-AuthDuration of <value> <means>
    Given the backend allows token "t1" with X-AuthDuration <value>
    When viewer "A" from 127.0.0.2 plays "s" over the target's protocol with token "t1"
    And viewer "A" plays again 1.5 seconds later
    Then viewer "A" is playing
    And the backend was asked <calls> for token "t1"

    Examples:
      | value | means                                  | calls            |
      | abc   | counts as the default 180 s            | 1 time           |
      | -5    | counts as the default 180 s            | 1 time           |
      | 0     | makes the next request ask the backend | at least 2 times |

  @REQ-07 @should @needs-sessions-api
  Scenario: A forced re-check asks the backend again about every open session of the stream
    Given the backend allows every token with X-AuthDuration 600
    When viewer "A" from 127.0.0.2 plays "s" over MPEG-TS with token "t1"
    And viewer "B" from 127.0.0.3 plays "s" over MPEG-TS with token "t2"
    And the operator forces a re-check of stream "s"
    Then the server counts 2 sessions to re-check
    And the backend receives an update_session call for token "t1" within 2 seconds of the forced re-check
    And the backend receives an update_session call for token "t2" within 2 seconds of the forced re-check

  @REQ-07 @RESP-02 @should @needs-sessions-api
  Scenario: A viewer whose forced re-check is denied is disconnected; the others play on
    Given the backend allows every token with X-AuthDuration 600
    When viewer "A" from 127.0.0.2 plays "s" over MPEG-TS with token "t1"
    And viewer "B" from 127.0.0.3 plays "s" over MPEG-TS with token "t2"
    And the backend now denies token "t1"
    And the operator forces a re-check of stream "s"
    Then viewer "A" is disconnected within 2 seconds
    And viewer "B" is still receiving media
    And the backend was asked 1 time for token "t1" with request_type "update_session"

  @REQ-07 @TIME-06 @should @needs-sessions-api
  Scenario: After a forced re-check the next request of an HLS viewer asks the backend
    Given the backend allows token "t1" with X-AuthDuration 600
    When viewer "A" from 127.0.0.2 plays "s" over HLS with token "t1"
    And the operator forces a re-check of stream "s"
    And viewer "A" plays again
    Then viewer "A" is playing
    And the backend was asked 1 time for token "t1" with request_type "update_session"

  @REQ-07 @should @needs-sessions-api
  Scenario: A forced re-check of an unknown stream is 404
    When the operator forces a re-check of an unknown stream
    Then the API answers 404
