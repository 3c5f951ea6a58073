Feature: Stream configuration override in the backend's answer
  A 200 may carry {"config": {…}}: a partial stream configuration applied to the stream itself,
  for every viewer, not only the one whose answer carried it.

  Background:
    Given a stream "s" with on_play auth
    And the backend allows token "t1" with X-AuthDuration 60
    And the backend allows token "t2" with X-AuthDuration 60 and config {"protocols":{"hls":false}}

  @CONF-03 @CONF-01 @must
  Scenario: One viewer's answer turning HLS off refuses every HLS viewer of the stream
    When viewer "A" from 127.0.0.2 plays "s" over HLS with token "t1"
    Then viewer "A" is playing
    When viewer "B" from 127.0.0.3 plays "s" over HLS with token "t2"
    Then viewer "A" is refused within 2 seconds
    When viewer "C" from 127.0.0.4 plays "s" over HLS with token "t1"
    Then viewer "C" is refused

  @CONF-03 @should
  Scenario: Turning HLS off leaves the stream's other protocols playing
    When viewer "A" from 127.0.0.2 plays "s" over MPEG-TS with token "t1"
    Then viewer "A" is playing
    When viewer "B" from 127.0.0.3 plays "s" over HLS with token "t2"
    Then viewer "A" is still receiving media

  @CONF-01 @CONF-04 @info @needs-api
  Scenario: An override with inputs changes the input in force, not the configuration on disk
    Given the backend allows token "t3" with X-AuthDuration 60 and config {"inputs":[{"url":"fake://other"}]}
    When viewer "A" from 127.0.0.2 plays "s" over HLS with token "t3"
    Then the configuration in force of stream "s" has the input "fake://other"
    And the configuration on disk of stream "s" has the input "fake://fake"
    When viewer "B" from 127.0.0.3 plays "s" over HLS with token "t1"
    Then viewer "B" is playing

  @AMB-16 @CONF-02 @must
  Scenario Outline: An override that is malformed or partly unknown (<what>) neither breaks the stream nor admits a denied viewer
    Given the backend allows token "t4" with X-AuthDuration 60 and config <config>
    And the backend denies token "t5" with config <config>
    When viewer "A" from 127.0.0.2 plays "s" over MPEG-TS with token "t1"
    And viewer "B" from 127.0.0.3 plays "s" over HLS with token "t4"
    And viewer "C" from 127.0.0.4 plays "s" over HLS with token "t5"
    Then viewer "C" is denied
    And viewer "A" is still receiving media
    When viewer "D" from 127.0.0.5 plays "s" over HLS with token "t1"
    Then viewer "D" is playing
    And the backend was asked 1 time for token "t5"

    Examples:
      | what                                  | config                                            |
      | a value of the wrong type             | {"protocols":{"hls":"off"}}                       |
      | an unknown key (ignored)              | {"bogus":1}                                       |
      | an unknown protocol (ignored)         | {"protocols":{"carrier-pigeon":false}}            |
      | an array                              | [1,2]                                             |
      | a string                              | "off"                                             |
      | an empty input list                   | {"inputs":[]}                                     |
      | inputs of the wrong type              | {"inputs":"fake://fake"}                          |
      | a file input outside the media folder | {"inputs":[{"url":"file://../../../etc/passwd"}]} |

  @CONF-01 @should @needs-publish @needs-api
  Scenario Outline: An override cannot open a stream that checks no publisher to publishers over <protocol>
    Given the backend allows token "t6" with X-AuthDuration 60 and config {"inputs":[{"url":"publish://"}]}
    When viewer "A" from 127.0.0.2 plays "s" over HLS with token "t6"
    Then viewer "A" is playing
    And the configuration in force of stream "s" has the input "fake://fake"
    When publisher "P" from 127.0.0.5 publishes to "s" over <protocol> with token "pt"
    Then publisher "P" is refused
    And the backend was not asked for token "pt"

    @needs-rtmp
    Examples: RTMP
      | protocol |
      | RTMP     |

    Examples: HTTP MPEG-TS
      | protocol     |
      | HTTP MPEG-TS |

  @CONF-01 @CONF-03 @must
  Scenario: The vendor's protocol name tshttp switches HTTP MPEG-TS off
    Given the backend allows token "t7" with X-AuthDuration 60 and config {"protocols":{"tshttp":false}}
    When viewer "A" from 127.0.0.2 plays "s" over MPEG-TS with token "t1"
    Then viewer "A" is playing
    When viewer "B" from 127.0.0.3 plays "s" over HLS with token "t7"
    Then viewer "B" is playing
    And viewer "A" is disconnected within 2 seconds
    When viewer "C" from 127.0.0.4 plays "s" over MPEG-TS with token "t1"
    Then viewer "C" is refused

  @CONF-01 @AMB-16 @should
  Scenario: A protocol the server does not serve is ignored and the rest of the override applies
    Given the backend allows token "t8" with X-AuthDuration 60 and config {"protocols":{"webrtc":false,"srt":false,"hls":false}}
    When viewer "A" from 127.0.0.2 plays "s" over HLS with token "t8"
    Then viewer "A" is refused
    When viewer "B" from 127.0.0.3 plays "s" over HLS with token "t1"
    Then viewer "B" is refused
    When viewer "C" from 127.0.0.4 plays "s" over MPEG-TS with token "t1"
    Then viewer "C" is playing

  @CONF-01 @AMB-16 @should
  Scenario: Stream fields the server does not implement are ignored and the rest of the override applies
    Given the backend allows token "t9" with X-AuthDuration 60 and config {"title":"News","thumbnails":{"enabled":true},"inputs":[{"url":"fake://fake","priority":1,"source_timeout":10}],"protocols":{"hls":false}}
    When viewer "A" from 127.0.0.2 plays "s" over HLS with token "t9"
    Then viewer "A" is refused
    When viewer "B" from 127.0.0.3 plays "s" over HLS with token "t1"
    Then viewer "B" is refused
    When viewer "C" from 127.0.0.4 plays "s" over MPEG-TS with token "t1"
    Then viewer "C" is playing
