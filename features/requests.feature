Feature: What the server asks the backend (table T1)
  The first request of a session asks the backend with request_type=new_session and every
  required parameter of T1; while the decision is fresh, later requests make no call.

  Background:
    Given a stream "s" with on_play auth
    And the backend allows token "t1" with X-AuthDuration 60

  @REQ-01 @REQ-02 @SESS-05 @must
  Scenario: The first request carries every required parameter
    When viewer "A" from 127.0.0.2 plays "s" over HLS with token "t1" and Referer "http://example.com/watch" and User-Agent "TestPlayer/1.0"
    Then viewer "A" is playing
    And the backend was asked 1 time for token "t1"
    And the backend's new_session call for token "t1" carried
      | parameter      | value                    |
      | name           | stream "s"               |
      | proto          | hls                      |
      | ip             | 127.0.0.2                |
      | request_type   | new_session              |
      | request_number | 0 or 1                   |
      | session_id     | a UUID                   |
      | stream_clients | an integer               |
      | total_clients  | an integer               |
      | token          | t1                       |
      | qs             | containing "token=t1"    |
      | user_agent     | TestPlayer/1.0           |
      | referer        | http://example.com/watch |

  @REQ-01 @REQ-03 @must
  Scenario: Requests within the auth duration make no further call
    When viewer "A" from 127.0.0.2 plays "s" over the target's protocol with token "t1"
    And viewer "A" plays again
    And viewer "A" plays again
    Then viewer "A" is playing
    And the backend was asked 1 time for token "t1"

  @REQ-02 @must
  Scenario Outline: A Referer with its own query reaches the backend as one intact value
    When viewer "A" from 127.0.0.2 plays "s" over HLS with token "t1" and Referer "<referer>"
    Then viewer "A" is playing
    And the backend's new_session call for token "t1" carried
      | referer | <referer>  |
      | token   | t1         |
      | name    | stream "s" |

    Examples:
      | referer                                       |
      | http://example.com/watch?token=x&name=y       |
      | http://example.com/search?q=a+b&r=1%2F2       |
      | http://example.com/p?u=http://a.b/c?d=e&f=g#h |

  @REQ-02 @must
  Scenario: An HTTP MPEG-TS viewer is announced with proto tshttp
    When viewer "A" from 127.0.0.2 plays "s" over MPEG-TS with token "t1"
    Then viewer "A" is playing
    And the backend's new_session call for token "t1" carried
      | proto | tshttp     |
      | name  | stream "s" |
      | ip    | 127.0.0.2  |

  @REQ-04 @must
  Scenario: A backend URL with its own query gets the parameters appended with &
    Given a stream "q" with on_play auth and a backend URL with query "site=1"
    When viewer "A" from 127.0.0.2 plays "q" over HLS with token "t1"
    Then viewer "A" is playing
    And the backend's new_session call for token "t1" carried
      | site         | 1           |
      | request_type | new_session |
      | name         | stream "q"  |

  @REQ-06 @info
  Scenario: stream_clients counts the viewers already on the stream
    Given the backend allows token "t2" with X-AuthDuration 60
    When viewer "A" from 127.0.0.2 plays "s" over HLS with token "t1"
    And viewer "B" from 127.0.0.3 plays "s" over HLS with token "t2"
    Then viewer "B" is playing
    And the backend's new_session call for token "t2" carried
      | stream_clients | 1 |

  @REQ-02 @must
  Scenario Outline: A token with <what> reaches the backend as one intact value
    Given the backend allows token "<token>" with X-AuthDuration 60
    When viewer "A" from 127.0.0.2 plays "s" over the target's protocol with token "<token>"
    Then viewer "A" is playing
    And the backend's new_session call for token "<token>" carried
      | token   | <token>    |
      | name    | stream "s" |
      | user_id | absent     |

    Examples:
      | what              | token       |
      | an ampersand      | a&user_id=1 |
      | spaces            | a b  c      |
      | percent signs     | 100%25 50%  |
      | a plus sign       | a+b         |
      | non-ASCII letters | jeton-é-雪  |
      | equals signs      | k=v=w       |
      | a hash            | a#b         |

  @REQ-01 @REQ-02 @must
  Scenario: A play check is an HTTP GET with its fields in the query string
    When viewer "A" from 127.0.0.2 plays "s" over HLS with token "t1"
    Then viewer "A" is playing
    And the backend's new_session call for token "t1" carried
      | (HTTP method) | GET         |
      | name          | stream "s"  |
      | request_type  | new_session |

  @REQ-02 @should
  Scenario: The backend is told the host the viewer asked for
    When viewer "A" from 127.0.0.2 plays "s" over HLS with token "t1"
    Then viewer "A" is playing
    And the backend's new_session call for token "t1" carried
      | host | not empty  |
      | name | stream "s" |

  @REQ-02 @DVR-01 @should
  Scenario: A live play is announced with dvr=false
    When viewer "A" from 127.0.0.2 plays "s" over MPEG-TS with token "t1"
    Then viewer "A" is playing
    And the backend's new_session call for token "t1" carried
      | dvr  | false      |
      | name | stream "s" |

  @REQ-01 @REQ-02 @should
  Scenario: An update_session call reports how long the session has lasted and what it delivered
    Given the backend allows token "t2" with X-AuthDuration 1
    When viewer "A" from 127.0.0.2 plays "s" over MPEG-TS with token "t2"
    Then viewer "A" is playing
    And the backend receives an update_session call for token "t2" within 3 seconds of its new_session call
    And the backend's update_session call for token "t2" carried
      | duration | a positive integer |
      | bytes    | a positive integer |
      | dvr      | false              |

  @REQ-06 @AMB-12 @info
  Scenario: An update_session call leaves the session being re-checked out of the stream's clients
    Given the backend allows token "t3" with X-AuthDuration 1
    When viewer "A" from 127.0.0.2 plays "s" over MPEG-TS with token "t3"
    Then viewer "A" is playing
    And the backend receives an update_session call for token "t3" within 3 seconds of its new_session call
    And the backend's new_session call for token "t3" carried
      | stream_clients | 0 |
    And the backend's update_session call for token "t3" carried
      | stream_clients | 0 |
