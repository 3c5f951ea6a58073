Feature: Wiring a backend to a stream
  A stream without on_play lets everyone play without asking any backend (CFG-05); the
  streams beside it that have on_play are still guarded.

  @CFG-05 @must
  Scenario: Without on_play everyone plays and no backend is asked
    Given a stream "open" without authorization
    And a stream "s" with on_play auth
    And the backend denies every token
    When viewer "A" from 127.0.0.2 plays "open" over HLS with token "t1"
    And viewer "B" from 127.0.0.3 plays "open" over MPEG-TS without a token
    And viewer "C" from 127.0.0.4 plays "s" over HLS with token "t1"
    Then viewer "A" is playing
    And viewer "B" is playing
    And viewer "C" is denied
    And the backend was asked 1 time
