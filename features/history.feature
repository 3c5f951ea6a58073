@needs-history
Feature: Session history
  A closed session stays listed in the session history, which the management API answers with
  GET /streamer/api/v3/sessions?closed=true, newest first, filtered by user id with user_id=
  (API-01: the session record's fields; API-02: a session closed through the API then appears
  in the history). One viewer on one stream is one session (SESS-06), so each close is one
  record.

  Background:
    Given the backend allows token "t1" as user "u1"
    And the backend allows token "t2" as user "u1"
    And the backend allows token "t3" as user "u2"
    And a stream "s" with on_play auth

  @API-02 @API-01 @must
  Scenario: A session closed through the API is in its user's history
    When viewer "A" from 127.0.0.2 plays "s" over HLS with token "t1"
    And the operator closes the session of viewer "A" through the API
    Then the session history lists 1 closed session of user "u1" within 3 seconds
    And the latest closed session of user "u1" shows
      | field     | value         |
      | token     | t1            |
      | name      | stream "s"    |
      | ip        | 127.0.0.2     |
      | proto     | hls           |
      | user_id   | user "u1"     |
      | opened_at | a recent time |
      | closed_at | a recent time |

  @API-01 @SESS-06 @SESS-07 @must
  Scenario: Viewers that hang up are in their own user's history only
    When viewer "A" from 127.0.0.2 plays "s" over MPEG-TS with token "t2"
    And viewer "B" from 127.0.0.3 plays "s" over MPEG-TS with token "t3"
    And viewer "A" leaves
    And viewer "B" leaves
    Then the session history lists 1 closed session of user "u1" within 3 seconds
    And the session history lists 1 closed session of user "u2" within 3 seconds
    And the latest closed session of user "u2" shows
      | field   | value      |
      | token   | t3         |
      | ip      | 127.0.0.3  |
      | proto   | tshttp     |

  @API-01 @SESS-06 @must
  Scenario: Each closed session of a user is a record, the newest first
    When viewer "A" from 127.0.0.2 plays "s" over MPEG-TS with token "t1"
    And viewer "A" leaves
    Then the session history lists 1 closed session of user "u1" within 3 seconds
    When viewer "B" from 127.0.0.3 plays "s" over MPEG-TS with token "t2"
    And viewer "B" leaves
    Then the session history lists 2 closed sessions of user "u1" within 3 seconds
    And the latest closed session of user "u1" shows
      | field | value     |
      | token | t2        |
      | ip    | 127.0.0.3 |

  @API-03 @info
  Scenario: A closed session says why it closed
    When viewer "A" from 127.0.0.2 plays "s" over HLS with token "t1"
    And the operator closes the session of viewer "A" through the API
    Then the session history lists 1 closed session of user "u1" within 3 seconds
    And the latest closed session of user "u1" shows
      | field        | value     |
      | close_reason | api       |
      | closed_at    | not empty |
