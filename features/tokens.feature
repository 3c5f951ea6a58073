Feature: Where the token comes from
  The token is the `token` query parameter. Without one the server generates a token, unless
  the server-wide no_auto_token is set: then a token-less request is refused at once.

  Background:
    Given a stream "s" with on_play auth
    And the backend allows every token with X-AuthDuration 60

  @TOK-01 @TOK-02 @must
  Scenario: A request without a token gets a generated one
    When viewer "A" from 127.0.0.2 plays "s" over the target's protocol without a token
    Then viewer "A" is playing
    And the backend's new_session call carried
      | token | not empty  |
      | name  | stream "s" |

  @TOK-03 @should @serial
  Scenario: With no_auto_token a request without a token is refused without asking the backend
    Given the server refuses requests without a token
    When viewer "A" from 127.0.0.2 plays "s" over the target's protocol without a token
    Then viewer "A" is denied
    And the backend was not asked

  @CFG-07 @TOK-01 @should @serial @needs-server-config
  Scenario: With auth_token renamed the token is read from that query parameter
    Given the server reads the token from the query parameter "tk"
    And the backend allows token "t1" with X-AuthDuration 60
    When viewer "A" from 127.0.0.2 plays "s" over the target's protocol with token "t1"
    And viewer "B" from 127.0.0.3 plays "s" over the target's protocol without a token and query "token=t2"
    Then viewer "A" is playing
    And the backend was asked 1 time for token "t1"
    And the backend was not asked for token "t2"

  @TOK-01 @info
  Scenario Outline: A token of <length> characters <outcome>
    When viewer "A" from 127.0.0.2 plays "s" over HLS with a token of <length> characters
    Then viewer "A" is <result>
    And the backend was <asked>

    Examples:
      | length | outcome                                   | result  | asked        |
      | 4096   | is passed to the backend                  | playing | asked 1 time |
      | 4097   | is refused without asking the backend     | refused | not asked    |
