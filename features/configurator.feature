@needs-auth-backends
Feature: Authorization configurator
  An `auth_backend NAME { … }` block decides for streams whose on_play is `auth://NAME`. Its rules
  run in a fixed order — allow token, deny token, allow ip, deny ip, allow country, deny country,
  allow ua, deny ua — and the first rule that matches decides. Only when no rule matches are the
  block's backends asked (in parallel); `allow default` decides when none of them answers.
  Blocks are put in place through PUT /streamer/api/v3/auth_backends/NAME.

  @CZR-01 @CZR-02 @must
  Scenario: A whitelisted address with a blacklisted token is denied
    Given an auth_backend "office" with:
      | rule       | values    |
      | allow ip   | 127.0.0.2 |
      | deny token | stolen    |
    And a stream "s" guarded by auth_backend "office"
    When viewer "A" from 127.0.0.2 plays "s" over HLS with token "stolen"
    And viewer "B" from 127.0.0.2 plays "s" over HLS with token "fine"
    Then viewer "A" is denied
    And viewer "B" is playing

  @CZR-01 @CZR-02 @must
  Scenario: A whitelisted token plays from a blacklisted address
    Given an auth_backend "office" with:
      | rule        | values      |
      | deny ip     | 127.0.0.0/8 |
      | allow token | vip         |
    And a stream "s" guarded by auth_backend "office"
    When viewer "A" from 127.0.0.2 plays "s" over HLS with token "vip"
    And viewer "B" from 127.0.0.2 plays "s" over HLS with token "other"
    Then viewer "A" is playing
    And viewer "B" is denied

  @CZR-01 @CZR-02 @CZR-04 @must
  Scenario: A matching rule decides without asking the backends
    Given the backend allows every token with X-AuthDuration 60
    And an auth_backend "office" with:
      | rule    | values      |
      | deny ip | 127.0.0.3   |
      | backend | the backend |
    And a stream "s" guarded by auth_backend "office"
    When viewer "A" from 127.0.0.3 plays "s" over HLS with token "t1"
    And viewer "B" from 127.0.0.2 plays "s" over HLS with token "t2"
    Then viewer "A" is denied
    And viewer "B" is playing
    And the backend was not asked for token "t1"
    And the backend was asked 1 time for token "t2"

  @CZR-06 @must
  Scenario: An abbreviated prefix covers its whole network
    Given an auth_backend "office" with:
      | rule     | values    |
      | deny ip  | 127.0/16  |
      | allow ip | 127.1/16  |
    And a stream "s" guarded by auth_backend "office"
    When viewer "A" from 127.0.0.2 plays "s" over HLS with token "t1"
    And viewer "B" from 127.1.0.2 plays "s" over HLS with token "t2"
    Then viewer "A" is denied
    And viewer "B" is playing

  @CZR-03 @must
  Scenario: Unreachable backends with allow default admit
    Given an auth_backend "office" with:
      | rule          | values                 |
      | backend       | an unreachable backend |
      | backend       | an unreachable backend |
      | allow default |                        |
    And a stream "s" guarded by auth_backend "office"
    When viewer "A" from 127.0.0.2 plays "s" over HLS with token "t1"
    Then viewer "A" is playing

  @CZR-03 @must
  Scenario: Unreachable backends without allow default refuse
    Given an auth_backend "office" with:
      | rule    | values                 |
      | backend | an unreachable backend |
      | backend | an unreachable backend |
    And a stream "s" guarded by auth_backend "office"
    When viewer "A" from 127.0.0.2 plays "s" over HLS with token "t1"
    Then viewer "A" is refused

  @CZR-03 @CZR-01 @must
  Scenario: A denied client stays out even with allow default
    Given an auth_backend "office" with:
      | rule          | values                 |
      | deny token    | stolen                 |
      | backend       | an unreachable backend |
      | allow default |                        |
    And a stream "s" guarded by auth_backend "office"
    When viewer "A" from 127.0.0.2 plays "s" over HLS with token "stolen"
    Then viewer "A" is denied

  @CZR-04 @AMB-20 @should
  Scenario: One backend allows while another is unreachable: admitted
    Given the backend allows every token with X-AuthDuration 60
    And an auth_backend "office" with:
      | rule    | values                 |
      | backend | an unreachable backend |
      | backend | the backend            |
    And a stream "s" guarded by auth_backend "office"
    When viewer "A" from 127.0.0.2 plays "s" over HLS with token "t1"
    Then viewer "A" is playing
    And the backend was asked 1 time for token "t1"

  @CZR-04 @AMB-20 @should
  Scenario: The only backend that answers denies: denied even with allow default
    Given the backend denies every token
    And an auth_backend "office" with:
      | rule          | values                 |
      | backend       | an unreachable backend |
      | backend       | the backend            |
      | allow default |                        |
    And a stream "s" guarded by auth_backend "office"
    When viewer "A" from 127.0.0.2 plays "s" over HLS with token "t1"
    Then viewer "A" is denied

  @CZR-03 @TIME-04 @info
  Scenario: A viewer let in by allow default is not asked about again within the default auth duration
    Given the backend answers 500
    And an auth_backend "office" with:
      | rule          | values      |
      | backend       | the backend |
      | allow default |             |
    And a stream "s" guarded by auth_backend "office"
    When viewer "A" from 127.0.0.2 plays "s" over HLS with token "t1"
    And viewer "A" plays again
    Then viewer "A" is playing
    And the backend was asked 1 time for token "t1"

  @CZR-01 @CZR-05 @info
  Scenario: A rule's allow lasts the default auth duration: a block changed meanwhile applies to new sessions
    Given an auth_backend "office" with:
      | rule     | values    |
      | allow ip | 127.0.0.2 |
    And a stream "s" guarded by auth_backend "office"
    When viewer "A" from 127.0.0.2 plays "s" over HLS with token "t1"
    Then viewer "A" is playing
    When the operator puts auth_backend "office" with:
      | rule    | values    |
      | deny ip | 127.0.0.2 |
    And viewer "A" plays again
    And viewer "B" from 127.0.0.2 plays "s" over HLS with token "t2"
    Then viewer "A" is playing
    And viewer "B" is denied

  @CZR-05 @info
  Scenario: An auth_backend deleted through the API leaves the list, and deleting it again finds nothing
    Given an auth_backend "office" with:
      | rule     | values    |
      | allow ip | 127.0.0.2 |
    Then the API lists auth_backend "office"
    When the operator deletes auth_backend "office"
    Then the API answers 204
    And the API does not list auth_backend "office"
    When the operator deletes auth_backend "office"
    Then the API answers 404
