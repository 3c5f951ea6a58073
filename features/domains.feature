Feature: Domain lock
  With `domains`, only pages of the listed sites (and their subdomains) may embed the stream,
  judged from the Referer. A foreign Referer is refused before any backend call.

  Background:
    Given a stream "s" with on_play auth and domains "example.com"
    And the backend allows every token with X-AuthDuration 60

  @DOM-01 @DOM-03 @must
  Scenario Outline: A Referer from a foreign site is refused without asking the backend
    When viewer "A" from 127.0.0.2 plays "s" over HLS with token "t1" and Referer "<referer>"
    Then viewer "A" is denied
    And the backend was not asked

    Examples:
      | referer                                 |
      | http://evil.com/watch                   |
      | http://example.com.evil.com/watch       |
      | http://notexample.com/                  |
      | http://evil.com/?from=http://example.com/ |

  @DOM-01 @DOM-03 @must
  Scenario Outline: A Referer from the listed domain or a subdomain plays
    When viewer "A" from 127.0.0.2 plays "s" over HLS with token "t1" and Referer "<referer>"
    Then viewer "A" is playing
    And the backend was asked 1 time for token "t1"

    Examples:
      | referer                          |
      | http://example.com/watch         |
      | https://www.example.com/page?x=1 |
      | http://EXAMPLE.com:8080/         |

  @DOM-02 @info
  Scenario: A viewer that sends no Referer is not covered by the lock
    When viewer "A" from 127.0.0.2 plays "s" over HLS with token "t1"
    Then viewer "A" is playing

  @DOM-02 @info @needs-require-referer
  Scenario: With require_referer, a viewer that sends no Referer is refused without asking the backend
    Given a stream "strict" with on_play auth and domains "example.com" and require_referer
    When viewer "A" from 127.0.0.2 plays "strict" over HLS with token "t1"
    Then viewer "A" is denied
    And the backend was not asked
    When viewer "B" from 127.0.0.3 plays "strict" over HLS with token "t2" and Referer "http://www.example.com/watch"
    Then viewer "B" is playing
    And the backend was asked 1 time for token "t2"
