Feature: The backend gives no answer (table T11)
  A 500, a refused connection, a dropped connection or no answer within 3 seconds is "no
  decision": a session that is not open yet is refused, an allowed one stays allowed, a denied
  one stays denied.

  Background:
    Given a stream "s" with on_play auth

  @RESP-04 @TIME-03 @must
  Scenario Outline: A new session is refused when the backend <failure>
    Given the backend allows every token
    And the backend <failure>
    When viewer "A" from 127.0.0.2 plays "s" over the target's protocol with token "t1"
    Then viewer "A" is refused
    And viewer "A" got its answer within 5 seconds
    And the backend was asked <calls> for token "t1"

    Examples:
      | failure                              | calls   |
      | answers 500                          | 1 time  |
      | answers only after 5 seconds         | 1 time  |
      | is unreachable                       | 0 times |
      | closes connections without answering | 1 time  |

  @TIME-03 @must
  Scenario: An answer that comes within the 3 second timeout is honoured
    Given the backend allows every token
    And the backend answers only after 2 seconds
    When viewer "A" from 127.0.0.2 plays "s" over the target's protocol with token "t1"
    Then viewer "A" is playing
    And the backend was asked 1 time for token "t1"

  @RESP-04 @TIME-04 @must
  Scenario Outline: An allowed session stays allowed when the recheck <failure>
    Given the backend allows token "t1" with X-AuthDuration 1
    When viewer "A" from 127.0.0.2 plays "s" over the target's protocol with token "t1"
    And the backend now <failure>
    And viewer "A" plays again after the auth duration has passed
    Then viewer "A" is playing
    And the backend was asked 1 time for token "t1" with request_type "update_session"

    Examples:
      | failure                              |
      | answers 500                          |
      | answers only after 5 seconds         |
      | closes connections without answering |

  @RESP-04 @TIME-04 @must
  Scenario Outline: A denied session stays denied when the backend then <failure>
    Given the backend denies token "t1" with X-AuthDuration 1
    When viewer "A" from 127.0.0.2 plays "s" over the target's protocol with token "t1"
    And the backend now <failure>
    And viewer "A" plays again after the auth duration has passed
    Then viewer "A" is denied
    And the backend was asked 2 times for token "t1"

    Examples:
      | failure                              |
      | answers 500                          |
      | closes connections without answering |

  # Bodies above 1 MiB are "no decision" (decisions.md, backend answer size): a session that is
  # not open yet is refused. A body of exactly 1 MiB is read.
  @RESP-04 @must
  Scenario Outline: An answer body of <size> bytes <outcome>
    Given the backend allows every token with a body of <size> bytes
    When viewer "A" from 127.0.0.2 plays "s" over the target's protocol with token "t1"
    Then viewer "A" is <result>
    And the backend was asked 1 time for token "t1"

    Examples:
      | size    | outcome                  | result  |
      | 1048576 | is read                  | playing |
      | 1048577 | is no decision: refused  | refused |

  # Header blocks above 64 KiB are "no decision" too (decisions.md, backend answer size).
  @RESP-04 @must
  Scenario Outline: An answer with a header block of <size> KiB <outcome>
    Given the backend allows every token with a header block of <size> KiB
    When viewer "A" from 127.0.0.2 plays "s" over the target's protocol with token "t1"
    Then viewer "A" is <result>
    And the backend was asked 1 time for token "t1"

    Examples:
      | size | outcome                 | result  |
      | 48   | is read                 | playing |
      | 80   | is no decision: refused | refused |
