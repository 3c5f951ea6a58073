Feature: Rechecks after the auth duration
  X-AuthDuration N makes a decision fresh for N seconds. HLS sessions are re-checked on the
  first request after that (the request waits for the answer); persistent connections such as
  HTTP MPEG-TS are re-checked in the background.

  Background:
    Given a stream "s" with on_play auth

  @TIME-02 @REQ-01 @SESS-05 @must
  Scenario: After X-AuthDuration 1 the next request is an update_session of the same session
    Given the backend allows token "t1" with X-AuthDuration 1
    When viewer "A" from 127.0.0.2 plays "s" over HLS with token "t1"
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
