@needs-publish
Feature: Publishing (on_publish and the stream password)
  A publisher is checked after it asks to publish and before its media flows (PUB-01): the
  on_publish backend gets a POST with the publisher's fields, in the query string or a JSON
  body (PUB-02, AMB-2); a stream with a password refuses publishers that do not send it (PUB-04).

  @PUB-02 @must
  Scenario Outline: The publish check over <protocol> is a POST carrying the publisher's fields
    Given a publishing point "p" with on_publish auth
    And the backend allows token "pt" with X-AuthDuration 60
    When publisher "P" from 127.0.0.5 publishes to "p" over <protocol> with token "pt"
    Then publisher "P" is publishing
    And the backend was asked 1 time for token "pt"
    And the backend's publish call for token "pt" carried
      | field        | value       |
      | name         | stream "p"  |
      | proto        | <proto>     |
      | ip           | 127.0.0.5   |
      | token        | pt          |
      | request_type | new_session |
      | session_id   | a UUID      |

    @needs-rtmp
    Examples: RTMP
      | protocol | proto |
      | RTMP     | rtmp  |

    Examples: HTTP MPEG-TS
      | protocol     | proto     |
      | HTTP MPEG-TS | not empty |

  @PUB-02 @AMB-2 @info
  Scenario: The publish call carries its fields again as a typed JSON body
    Given a publishing point "p" with on_publish auth
    And the backend allows token "pt" with X-AuthDuration 60
    When publisher "P" from 127.0.0.5 publishes to "p" over HTTP MPEG-TS with token "pt"
    Then publisher "P" is publishing
    And the backend's publish call for token "pt" carried a JSON body with
      | field          | value         |
      | name           | stream "p"    |
      | token          | "pt"          |
      | ip             | "127.0.0.5"   |
      | request_type   | "new_session" |
      | request_number | 1             |
      | session_id     | a UUID        |
      | dvr            | false         |

  @PUB-01 @PUB-02 @must
  Scenario Outline: A publisher refused over <protocol> gets no media into the stream
    Given a publishing point "p" with on_publish auth
    And the backend denies token "pt"
    When publisher "P" from 127.0.0.5 publishes to "p" over <protocol> with token "pt"
    Then publisher "P" is refused
    And the backend was asked 1 time for token "pt"
    And stream "p" delivers no media

    @needs-rtmp
    Examples: RTMP
      | protocol |
      | RTMP     |

    Examples: HTTP MPEG-TS
      | protocol     |
      | HTTP MPEG-TS |

  @PUB-01 @PUB-03 @must @needs-rtmp
  Scenario: An admitted publisher's media plays
    Given a publishing point "p" with on_publish auth
    And the backend allows token "pt" with X-AuthDuration 60
    When publisher "P" streams a test pattern to "p" over RTMP with token "pt"
    Then stream "p" delivers media within 10 seconds
    And the backend was asked 1 time for token "pt"

  @PUB-04 @must
  Scenario Outline: A publisher over <protocol> <how> is refused
    Given a publishing point "p" with password "secret"
    When publisher "P" from 127.0.0.5 publishes to "p" over <protocol> <how>
    Then publisher "P" is refused
    And the backend was not asked
    And stream "p" delivers no media

    @needs-rtmp
    Examples: RTMP
      | protocol | how                                     |
      | RTMP     | with token "pt" and password "wrong"    |
      | RTMP     | with token "pt"                         |

    Examples: HTTP MPEG-TS
      | protocol     | how                                  |
      | HTTP MPEG-TS | with token "pt" and password "wrong" |
      | HTTP MPEG-TS | with token "pt"                      |

  @PUB-04 @should
  Scenario Outline: A publisher over <protocol> with the stream's password as ?password= is admitted
    Given a publishing point "p" with password "secret"
    When publisher "P" from 127.0.0.5 publishes to "p" over <protocol> with token "pt" and password "secret"
    Then publisher "P" is publishing

    @needs-rtmp
    Examples: RTMP
      | protocol |
      | RTMP     |

    Examples: HTTP MPEG-TS
      | protocol     |
      | HTTP MPEG-TS |

  @REQ-06 @AMB-12 @info @needs-rtmp
  Scenario: A viewer's call does not count the stream's publisher among its clients
    Given a publishing point "p" with on_publish auth and on_play auth
    And the backend allows every token with X-AuthDuration 60
    When publisher "P" streams a test pattern to "p" over RTMP with token "pt"
    Then publisher "P" is publishing
    When viewer "A" from 127.0.0.2 plays "p" over MPEG-TS with token "t1"
    Then viewer "A" is playing
    And the backend's new_session call for token "t1" carried
      | stream_clients | 0 |
