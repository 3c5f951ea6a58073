Feature: Admin view tokens
  The management API mints tokens starting with ADM; the server accepts them as permission to
  play without asking the backend. Anything that only looks like one must not bypass the backend.

  Background:
    Given a stream "s" with on_play auth
    And the backend denies every token

  @ADM-01 @ADM-02 @must
  Scenario: A minted admin view token plays without a backend call
    Given the operator has minted an admin view token
    Then the admin view token has the shape ADM1-<unix seconds>-<40 hex digits>
    When viewer "A" from 127.0.0.2 plays "s" over HLS with the admin token
    Then viewer "A" is playing
    And the backend was not asked

  @ADM-01 @must
  Scenario: A viewer with the admin view token keeps playing over MPEG-TS
    Given the operator has minted an admin view token
    When viewer "A" from 127.0.0.2 plays "s" over MPEG-TS with the admin token
    Then viewer "A" is playing
    When 2 seconds pass
    Then viewer "A" is still receiving media
    And the backend was not asked

  @ADM-04 @must
  Scenario Outline: With <token> admin token the viewer does not play unless the backend allows it
    Given the operator has minted an admin view token
    When viewer "A" from 127.0.0.2 plays "s" over HLS with <token> admin token
    Then viewer "A" is refused

    Examples:
      | token                |
      | a forged             |
      | an altered-signature |
      | an altered-timestamp |

  @ADM-04 @SESS-02 @should
  Scenario: A session opened with the admin token does not let a plain request of its identity skip the backend
    Given a stream "k" with on_play auth and session_keys "name,ip,proto"
    And the operator has minted an admin view token
    When viewer "A" from 127.0.0.2 plays "k" over HLS with the admin token
    Then viewer "A" is playing
    When viewer "B" from 127.0.0.2 plays "k" over HLS with token "t9"
    Then viewer "B" is refused
    And the backend was asked 1 time for token "t9"
