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
