Feature: How the backend's answer is read (table T3)

  Background:
    Given a stream "s" with on_play auth

  @RESP-01 @must
  Scenario: A 200 lets the viewer play
    Given the backend allows token "t1"
    When viewer "A" from 127.0.0.2 plays "s" over the target's protocol with token "t1"
    Then viewer "A" is playing
    And the backend was asked 1 time for token "t1"

  @RESP-02 @must
  Scenario: A 403 refuses the viewer with 403
    Given the backend denies token "t1"
    When viewer "A" from 127.0.0.2 plays "s" over the target's protocol with token "t1"
    Then viewer "A" is denied
    And the backend was asked 1 time for token "t1"

  @RESP-03 @must
  Scenario: A 302 sends the player to the backend's Location
    Given the backend redirects token "t1" to "http://cdn.example.com/backup/index.m3u8"
    When viewer "A" from 127.0.0.2 plays "s" over HLS with token "t1"
    Then viewer "A" is redirected to "http://cdn.example.com/backup/index.m3u8"
    And the backend was asked 1 time for token "t1"

  @RESP-03 @AMB-5 @info
  Scenario: A re-check answered 302 ends a running HLS session like a deny
    Given the backend allows token "t1" with X-AuthDuration 1
    When viewer "A" from 127.0.0.2 plays "s" over HLS with token "t1"
    And the backend now redirects token "t1" to "http://cdn.example.com/backup/index.m3u8"
    And viewer "A" plays again after the auth duration has passed
    Then viewer "A" is denied
    And the backend was asked 1 time for token "t1" with request_type "update_session"

  @RESP-05 @info
  Scenario Outline: A recheck answered <status> leaves the allowed viewer <result>
    Given the backend allows token "t1" with X-AuthDuration 1
    When viewer "A" from 127.0.0.2 plays "s" over the target's protocol with token "t1"
    And the backend now answers <status> for token "t1"
    And viewer "A" plays again after the auth duration has passed
    Then viewer "A" is <result>
    And the backend was asked 1 time for token "t1" with request_type "update_session"

    Examples:
      | status | result  |
      | 401    | refused |
      | 404    | refused |
      | 502    | playing |
      | 503    | playing |

  @RESP-06 @LIM-01 @must
  Scenario: X-UserId is an opaque string: "007" and "7" are two users
    Given the backend allows token "t1" as user "007" with X-Max-Sessions 1 and X-AuthDuration 60
    And the backend allows token "t2" as user "7" with X-Max-Sessions 1 and X-AuthDuration 60
    When viewer "A" from 127.0.0.2 plays "s" over the target's protocol with token "t1"
    And viewer "B" from 127.0.0.3 plays "s" over the target's protocol with token "t2"
    And viewer "A" plays again
    And viewer "B" plays again
    Then viewer "A" is playing
    And viewer "B" is playing
    When viewer "C" from 127.0.0.4 plays "s" over the target's protocol with token "t1"
    And viewer "A" plays again
    And viewer "C" plays again
    And viewer "B" plays again
    Then exactly 1 of viewers "A" and "C" is playing
    And viewer "B" is playing
