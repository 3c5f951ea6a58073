Feature: Generated cases
  Each scenario plays a bounded number of generated cases against the server and checks one
  property over all of them. The cases come from a seed (USHER_SEED, random by default); a
  failure names the seed that replays it.

  @SESS-01 @SESS-02 @SESS-05 @AMB-11 @must @needs-hls @needs-mpegts
  Scenario: Plays share a session_id exactly when their session keys' values are equal
    Given the backend allows every token with X-AuthDuration 1
    When 16 generated groups of viewers play generated streams with generated tokens and session keys, twice
    Then two plays share a session_id exactly when their session keys' values are equal

  @REQ-02 @must @needs-hls
  Scenario: Stream names, tokens and user agents reach the backend exactly as they were sent
    Given the backend allows every token with X-AuthDuration 60
    When 24 generated viewers play generated stream names with generated tokens and user agents
    Then every backend call carried exactly the stream name, token, address and user agent that were sent
