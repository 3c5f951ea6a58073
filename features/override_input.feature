@needs-file-input
Feature: A backend's config override switches a running stream's input
  The seed's worked example: a stream plays a file; a viewer's on_play answer carries
  {"config": {"inputs": [{"url": "fake://fake"}]}}; from then on the stream plays the new input,
  for every viewer, those already watching included. Watchers tell the inputs apart by picture
  size: the suite's file is 160x120.

  Background:
    Given the media file "conformance-clip.mp4" of 160x120 is in the target's media folder
    And a stream "s" playing "file://conformance-clip.mp4" with on_play auth
    And the backend allows token "t1" with X-AuthDuration 60
    And the backend allows token "t2" with X-AuthDuration 60 and config {"inputs":[{"url":"fake://fake"}]}

  @CONF-01 @CONF-03 @must
  Scenario: HLS playback shows the new input after a viewer's answer overrides it
    When watcher "W" watches "s" over HLS with token "t1"
    Then watcher "W" sees video of 160x120
    When viewer "B" from 127.0.0.3 plays "s" over HLS with token "t2"
    Then viewer "B" is playing
    And watcher "W" sees video other than 160x120 within 20 seconds
    When watcher "N" watches "s" over HLS with token "t1"
    Then watcher "N" sees video other than 160x120 within 20 seconds

  @CONF-03 @should
  Scenario: An HLS viewer watching before the switch is not dropped and sees EXT-X-DISCONTINUITY
    When watcher "W" watches "s" over HLS with token "t1"
    Then watcher "W" sees video of 160x120
    When viewer "B" from 127.0.0.3 plays "s" over HLS with token "t2"
    Then watcher "W" sees video other than 160x120 within 20 seconds
    And watcher "W" saw EXT-X-DISCONTINUITY before the new video
    And watcher "W" was never refused nor disconnected

  @CONF-03 @should
  Scenario: An MPEG-TS viewer connected before the switch keeps its connection and gets the new input
    When watcher "W" watches "s" over MPEG-TS with token "t1"
    Then watcher "W" sees video of 160x120
    When viewer "B" from 127.0.0.3 plays "s" over HLS with token "t2"
    Then watcher "W" sees video other than 160x120 within 20 seconds
    And watcher "W" was never refused nor disconnected
