Feature: Session identity
  A play session is one viewer on one stream. Its identity is computed from the session keys,
  by default the stream name, the client address, the protocol and the token (decisions AMB-25);
  with session_keys the listed keys. Changing any key's value opens a new session with a new
  session_id and a new new_session call.

  Background:
    Given the backend allows every token with X-AuthDuration 60

  @SESS-01 @SESS-05 @must
  Scenario: The same viewer, stream and token stay one session
    Given a stream "s" with on_play auth
    When viewer "A" from 127.0.0.2 plays "s" over the target's protocol with token "t1"
    And viewer "A" plays again
    Then viewer "A" is playing
    And the backend was asked 1 time for token "t1"
    And viewer "A" had 1 different session_id

  @SESS-01 @must
  Scenario: Another client address opens another session
    Given a stream "s" with on_play auth
    When viewer "A" from 127.0.0.2 plays "s" over the target's protocol with token "t1"
    And viewer "B" from 127.0.0.3 plays "s" over the target's protocol with token "t1"
    Then viewer "A" is playing
    And viewer "B" is playing
    And the backend was asked 2 times for token "t1" with request_type "new_session"
    And viewer "A" and viewer "B" had different session_ids

  @SESS-01 @must
  Scenario: Another stream opens another session
    Given a stream "s" with on_play auth
    And a stream "s2" with on_play auth
    When viewer "A" from 127.0.0.2 plays "s" over the target's protocol with token "t1"
    And viewer "A" plays "s2" over the target's protocol with token "t1"
    Then viewer "A" is playing
    And the backend was asked 2 times for token "t1" with request_type "new_session"
    And the backend's calls for token "t1" carried 2 different session_ids

  @SESS-01 @must
  Scenario: Another token opens another session
    Given a stream "s" with on_play auth
    When viewer "A" from 127.0.0.2 plays "s" over the target's protocol with token "t1"
    And viewer "A" plays "s" over the target's protocol with token "t2"
    Then viewer "A" is playing
    And the backend was asked 1 time for token "t1" with request_type "new_session"
    And the backend was asked 1 time for token "t2" with request_type "new_session"
    And viewer "A" had 2 different session_ids

  @SESS-01 @AMB-25 @should @needs-rtmp
  Scenario: An HLS grant does not let the same token play over RTMP until the backend is asked
    Given a stream "s" with on_play auth
    When viewer "A" from 127.0.0.2 plays "s" over HLS with token "t1"
    Then viewer "A" is playing
    When the backend now denies token "t1"
    And viewer "B" from 127.0.0.2 plays "s" over RTMP with token "t1"
    Then viewer "B" is refused
    And viewer "A" is playing
    And the backend was asked 2 times for token "t1" with request_type "new_session"
    And the backend's new_session calls for token "t1" carried proto "hls" then "rtmp"

  @SESS-01 @AMB-25 @should
  Scenario: With the default session keys, another protocol is another session
    Given a stream "s" with on_play auth
    When viewer "A" from 127.0.0.2 plays "s" over HLS with token "t1"
    And viewer "A" plays "s" over MPEG-TS with token "t1"
    Then viewer "A" is playing
    And the backend was asked 2 times for token "t1" with request_type "new_session"
    And the backend's new_session calls for token "t1" carried proto "hls" then "tshttp"
    And viewer "A" had 2 different session_ids

  @SESS-02 @must
  Scenario Outline: With session_keys, changing the listed key <key> opens a new session
    Given a stream "s" with on_play auth and session_keys "ip,name,proto,token"
    And a stream "s2" with on_play auth and session_keys "ip,name,proto,token"
    When viewer "A" from 127.0.0.2 plays "s" over HLS with token "t1"
    And viewer "A" plays "<stream>" over <protocol> with token "<token>"
    Then viewer "A" is playing
    And the backend was asked 2 times with request_type "new_session"
    And viewer "A" had 2 different session_ids

    Examples:
      | key   | stream | protocol | token |
      | proto | s      | MPEG-TS  | t1    |
      | token | s      | HLS      | t2    |
      | name  | s2     | HLS      | t1    |

    @needs-rtmp
    Examples: over RTMP
      | key   | stream | protocol | token |
      | proto | s      | RTMP     | t1    |

    @needs-rtsp
    Examples: over RTSP
      | key   | stream | protocol | token |
      | proto | s      | RTSP     | t1    |

  @SESS-03 @must
  Scenario Outline: A session_keys list without <missing> is refused by the API, naming it
    When the operator puts stream "s" with on_play auth and session_keys "<keys>"
    Then the API refuses it with an error naming "<missing>"

    Examples:
      | keys           | missing |
      | ip,name,token  | proto   |
      | ip,proto,token | name    |
      | name,proto     | ip      |

  @SESS-03 @must
  Scenario: The mandatory session keys may come in any order
    When the operator puts stream "s" with on_play auth and session_keys "token,proto,name,ip"
    Then the API accepts it

  @SESS-07 @API-01 @must
  Scenario: An HTTP MPEG-TS session ends when its connection ends
    Given a stream "s" with on_play auth
    When viewer "A" from 127.0.0.2 plays "s" over MPEG-TS with token "t1"
    Then viewer "A" is playing
    And the server lists 1 open session of stream "s"
    When viewer "A" leaves
    Then the server lists 0 open sessions of stream "s" within 2 seconds

  @SESS-01 @SESS-06 @SESS-07 @should
  Scenario: Two MPEG-TS connections of one identity are one session, open while either plays
    Given a stream "s" with on_play auth
    And the backend allows token "t1" with X-AuthDuration 60
    When viewer "A" from 127.0.0.2 plays "s" over MPEG-TS with token "t1"
    And viewer "B" from 127.0.0.2 plays "s" over MPEG-TS with token "t1"
    Then viewer "A" and viewer "B" had the same session_id
    And the server lists 1 open session of stream "s"
    When viewer "A" leaves
    And 1 second passes
    Then the server lists 1 open session of stream "s"
    And viewer "B" is still receiving media
    And the backend was asked 1 time for token "t1"

  @SESS-06 @SESS-07 @API-01 @should @needs-sessions-api
  Scenario: An HLS viewer of a stream without authorization stays one session across its requests
    Given a stream "open" without authorization
    When viewer "A" from 127.0.0.2 plays "open" over HLS with token "t1"
    Then viewer "A" is playing
    And the server's session of viewer "A" shows
      | field | value              |
      | bytes | a positive integer |
    When viewer "A" plays again
    Then viewer "A" is playing
    And the server's session of viewer "A" shows
      | field     | value            |
      | id        | as before        |
      | opened_at | as before        |
      | bytes     | more than before |

  @SESS-08 @must
  Scenario: A viewer who comes back while the decision is fresh is not asked about again
    Given a stream "s" with on_play auth
    When viewer "A" from 127.0.0.2 plays "s" over MPEG-TS with token "t1"
    And viewer "A" leaves
    Then the server lists 0 open sessions of stream "s" within 2 seconds
    When viewer "A" plays again
    Then viewer "A" is playing
    And the backend was asked 1 time for token "t1"
    And the server lists 1 open session of stream "s"

  @SESS-02 @AMB-11 @must
  Scenario: Viewers whose addresses differ only in where their digits and dots stand are different sessions
    An address is a session key (SESS-02): any change of it is another identity, so another
    session_id (AMB-11), however the server writes the address down before hashing it.
    Given a stream "s" with on_play auth
    And the backend allows token "t1" with X-AuthDuration 60
    When viewer "A" from 127.0.0.2 plays "s" over HLS with token "t1"
    And viewer "B" from 127.0.0.12 plays "s" over HLS with token "t1"
    And viewer "C" from 127.0.0.21 plays "s" over HLS with token "t1"
    And viewer "D" from 127.0.0.22 plays "s" over HLS with token "t1"
    And viewer "E" from 127.0.0.20 plays "s" over HLS with token "t1"
    And viewer "F" from 127.0.0.99 plays "s" over HLS with token "t1"
    And viewer "G" from 127.0.0.102 plays "s" over HLS with token "t1"
    And viewer "H" from 127.0.0.110 plays "s" over HLS with token "t1"
    And viewer "I" from 127.0.0.112 plays "s" over HLS with token "t1"
    And viewer "J" from 127.0.0.120 plays "s" over HLS with token "t1"
    And viewer "K" from 127.0.0.180 plays "s" over HLS with token "t1"
    And viewer "L" from 127.0.0.190 plays "s" over HLS with token "t1"
    And viewer "M" from 127.0.0.201 plays "s" over HLS with token "t1"
    And viewer "N" from 127.0.0.210 plays "s" over HLS with token "t1"
    And viewer "O" from 127.0.0.200 plays "s" over HLS with token "t1"
    And viewer "P" from 127.0.0.222 plays "s" over HLS with token "t1"
    And viewer "Q" from 127.0.2.1 plays "s" over HLS with token "t1"
    And viewer "R" from 127.0.21.1 plays "s" over HLS with token "t1"
    And viewer "S" from 127.0.12.1 plays "s" over HLS with token "t1"
    And viewer "T" from 127.0.1.21 plays "s" over HLS with token "t1"
    And viewer "U" from 127.2.0.1 plays "s" over HLS with token "t1"
    And viewer "V" from 127.20.0.1 plays "s" over HLS with token "t1"
    And viewer "W" from 127.200.0.1 plays "s" over HLS with token "t1"
    And viewer "X" from 127.0.1.121 plays "s" over HLS with token "t1"
    And viewer "Y" from 127.0.121.1 plays "s" over HLS with token "t1"
    Then the backend's calls for token "t1" carried 25 different session_ids

  @RESP-01 @BAN-01 @must
  Scenario: Refusals that expired leave the server admitting the viewers who follow
    Eight refusals are cached for a second and then let go; however the server keeps its
    books, every later viewer the backend allows plays.
    Given a stream "s" with on_play auth
    And the backend denies token "t0" with X-AuthDuration 1
    And the backend allows token "t1" with X-AuthDuration 60
    When viewer "A" from 127.0.0.2 plays "s" over HLS with token "t0"
    And viewer "B" from 127.0.0.3 plays "s" over HLS with token "t0"
    And viewer "C" from 127.0.0.4 plays "s" over HLS with token "t0"
    And viewer "D" from 127.0.0.5 plays "s" over HLS with token "t0"
    And viewer "E" from 127.0.0.6 plays "s" over HLS with token "t0"
    And viewer "F" from 127.0.0.7 plays "s" over HLS with token "t0"
    And viewer "G" from 127.0.0.8 plays "s" over HLS with token "t0"
    And viewer "H" from 127.0.0.9 plays "s" over HLS with token "t0"
    And 3 seconds pass
    And viewer "I" from 127.0.0.10 plays "s" over HLS with token "t1"
    And viewer "J" from 127.0.0.11 plays "s" over HLS with token "t1"
    And viewer "K" from 127.0.0.12 plays "s" over HLS with token "t1"
    And viewer "L" from 127.0.0.13 plays "s" over HLS with token "t1"
    And viewer "M" from 127.0.0.14 plays "s" over HLS with token "t1"
    And viewer "N" from 127.0.0.15 plays "s" over HLS with token "t1"
    And viewer "O" from 127.0.0.16 plays "s" over HLS with token "t1"
    And viewer "P" from 127.0.0.17 plays "s" over HLS with token "t1"
    Then exactly 0 of viewers "A", "B", "C", "D", "E", "F", "G", "H" are playing
    And exactly 8 of viewers "I", "J", "K", "L", "M", "N", "O", "P" are playing

  @API-02 @must
  Scenario: Closing a session through the API disconnects its MPEG-TS viewer
    Given a stream "s" with on_play auth
    When viewer "A" from 127.0.0.2 plays "s" over MPEG-TS with token "t1"
    And the operator closes the session of viewer "A" through the API
    Then viewer "A" is disconnected within 2 seconds

  @API-02 @must
  Scenario: Closing one session through the API leaves the stream's other sessions playing
    Given a stream "s" with on_play auth
    When viewer "A" from 127.0.0.2 plays "s" over MPEG-TS with token "t1"
    And viewer "B" from 127.0.0.3 plays "s" over MPEG-TS with token "t2"
    And viewer "C" from 127.0.0.4 plays "s" over MPEG-TS with token "t3"
    And the operator closes the session of viewer "B" through the API
    Then viewer "B" is disconnected within 2 seconds
    And viewer "A" is still receiving media
    And viewer "C" is still receiving media
    And the server lists 2 open sessions of stream "s"

  @SESS-04 @AMB-10 @should
  Scenario Outline: The session key <key> tells apart requests that differ only in it
    Given a stream "s" with on_play auth and session_keys "ip,name,proto,<key>"
    When viewer "A" from 127.0.0.2 plays "s" over HLS with token "t1" and <first>
    And viewer "A" plays "s" over HLS with token "t1" and <first>
    And viewer "A" plays "s" over HLS with token "t1" and <second>
    Then viewer "A" is playing
    And the backend was asked 2 times for token "t1" with request_type "new_session"
    And the backend's calls for token "t1" carried 2 different session_ids

    Examples:
      | key               | first                 | second                |
      | header.user-agent | User-Agent "Player/1" | User-Agent "Player/2" |
      | query.sid         | query "sid=1"         | query "sid=2"         |

  @SESS-04 @AMB-10 @should
  Scenario: A session key of an unknown kind is refused by the API, naming it
    When the operator puts stream "s" with on_play auth and session_keys "ip,name,proto,cookie.sid"
    Then the API refuses it with an error naming "cookie.sid"

  @SESS-07 @AMB-13 @should @needs-sessions-api
  Scenario: An HLS session stays open between its requests
    A player asks for its playlist every few seconds; its session does not close in between
    (AMB-13: only after http_session_idle, 30 s by default, without a request).
    Given a stream "s" with on_play auth
    And the backend allows token "t1" with X-AuthDuration 60
    When viewer "A" from 127.0.0.2 plays "s" over HLS with token "t1"
    And 2 seconds pass
    Then the server lists 1 open session of stream "s"

  @SESS-07 @AMB-13 @info @slow
  Scenario: An HLS session that stops asking is closed after an idle time
    Given a stream "s" with on_play auth
    When viewer "A" from 127.0.0.2 plays "s" over HLS with token "t1"
    Then the server lists 1 open session of stream "s"
    And the server lists 0 open sessions of stream "s" within 60 seconds

  @API-01 @should @needs-sessions-api
  Scenario: The session list says what a viewer's session is
    Given a stream "s" with on_play auth
    And the backend allows token "t1" with X-AuthDuration 60
    When viewer "A" from 127.0.0.2 plays "s" over HLS with token "t1"
    Then the server's session of viewer "A" shows
      | field | value      |
      | type  | play       |
      | name  | stream "s" |
      | ip    | 127.0.0.2  |
      | proto | hls        |
      | token | t1         |

  @API-01 @should @needs-sessions-api
  Scenario: The session list shows the user id and the session cap the backend gave
    Given a stream "s" with on_play auth
    And the backend allows token "t1" as user "u1" with X-Max-Sessions 3 and X-AuthDuration 60
    When viewer "A" from 127.0.0.2 plays "s" over HLS with token "t1"
    Then viewer "A" is playing
    And the server's session of viewer "A" shows
      | field        | value     |
      | user_id      | user "u1" |
      | max_sessions | 3         |

  @API-01 @info @needs-sessions-api
  Scenario: The session list shows each open session's fields
    Given a stream "s" with on_play auth
    And the backend allows token "t9" as user "u1" with X-AuthDuration 60
    When viewer "A" from 127.0.0.2 plays "s" over HLS with token "t9" and Referer "http://example.com/watch" and User-Agent "TestPlayer/2.0"
    Then viewer "A" is playing
    And the server's session of viewer "A" shows
      | field        | value                    |
      | id           | the backend's session_id |
      | type         | play                     |
      | name         | stream "s"               |
      | ip           | 127.0.0.2                |
      | proto        | hls                      |
      | token        | t9                       |
      | user_id      | user "u1"                |
      | bytes        | an integer               |
      | opened_at    | an integer               |
      | referer      | http://example.com/watch |
      | user_agent   | TestPlayer/2.0           |
      | query_string | containing "token=t9"    |
