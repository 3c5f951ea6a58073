Feature: A cluster sharing one session store
  Several servers that share a session store (the reference server's `session_store`) hold a
  user's session limit, X-Unique and bans across all of them, where the spec alone has them per
  server (LIM-07). These cases need a cluster target (`usher check --cluster`, or
  `[cluster] members` in a manifest) and play on its nodes, "node A" and "node B"; a single
  server reports them as not applicable. Stopping a node and restarting the store need the
  control only the embedded cluster gives.

  @cluster @needs-cluster @LIM-02 @LIM-07 @must
  Scenario: A user's session limit counts the sessions of every node
    Given a stream "s" with on_play auth
    And the backend allows token "t1" as user "u1" with X-Max-Sessions 2 and X-AuthDuration 60
    And the backend allows token "t2" as user "u1" with X-Max-Sessions 2 and X-AuthDuration 60
    And the backend allows token "t3" as user "u1" with X-Max-Sessions 2 and X-AuthDuration 60
    When viewer "A" from 127.0.0.2 plays "s" on node B over the target's protocol with token "t1"
    And viewer "B" from 127.0.0.3 plays "s" on node A over the target's protocol with token "t2"
    And viewer "C" from 127.0.0.4 plays "s" on node A over the target's protocol with token "t3"
    Then viewer "C" is playing
    And viewer "A" is refused within 2 seconds
    When viewer "B" plays again
    Then viewer "B" is playing

  @cluster @needs-cluster @UNIQ-01 @LIM-07 @must
  Scenario: X-Unique on one node closes the user's session on the other
    Given a stream "s" with on_play auth
    And the backend allows token "t1" as user "u1" with X-AuthDuration 60
    And the backend allows token "t2" as user "u1" with X-Unique and X-AuthDuration 60
    When viewer "A" from 127.0.0.2 plays "s" on node A over the target's protocol with token "t1"
    And viewer "B" from 127.0.0.3 plays "s" on node B over the target's protocol with token "t2"
    Then viewer "B" is playing
    And viewer "A" is refused within 2 seconds
    When viewer "B" plays again
    Then viewer "B" is playing

  @cluster @needs-cluster @BAN-01 @LIM-07 @must
  Scenario: A denial on one node refuses the same session on the other without a backend call
    Given a stream "s" with on_play auth
    And the backend denies token "t1" with X-AuthDuration 60
    When viewer "A" from 127.0.0.2 plays "s" on node A over the target's protocol with token "t1"
    Then viewer "A" is denied
    When viewer "A" plays "s" on node B over the target's protocol with token "t1"
    Then viewer "A" is denied
    And the backend was asked 1 time for token "t1"

  @cluster @needs-cluster @needs-cluster-control @LIM-02 @LIM-07 @should @serial
  Scenario: A stopped node's sessions count until their auth duration has passed, then not
    Given a stream "s" with on_play auth
    And the backend allows token "t1" as user "u1" with X-Max-Sessions 1 and X-AuthDuration 4
    And the backend allows token "t2" as user "u1" with X-Max-Sessions 1 and X-AuthDuration 60
    And the backend allows token "t3" as user "u2" with X-Max-Sessions 1 and X-AuthDuration 2
    And the backend allows token "t4" as user "u2" with X-Max-Sessions 1 and X-AuthDuration 60
    When viewer "A" from 127.0.0.2 plays "s" on node B over the target's protocol with token "t1"
    And viewer "E" from 127.0.0.5 plays "s" on node B over the target's protocol with token "t3"
    Then viewer "A" is playing
    And viewer "E" is playing
    When node B stops
    And viewer "C" from 127.0.0.3 plays "s" on node A over the target's protocol with token "t2"
    Then viewer "C" is playing
    When viewer "D" from 127.0.0.2 plays "s" on node A over the target's protocol with token "t1"
    Then viewer "D" is denied
    And the backend was asked 1 time for token "t1"
    When the auth duration of token "t3" has passed
    And viewer "F" from 127.0.0.6 plays "s" on node A over the target's protocol with token "t4"
    Then viewer "F" is playing
    When viewer "G" from 127.0.0.5 plays "s" on node A over the target's protocol with token "t3"
    Then viewer "G" is playing
    And the backend was asked 2 times for token "t3"

  @cluster @needs-cluster @needs-cluster-control @LIM-02 @LIM-07 @should @serial
  Scenario: After the store restarts empty the nodes hand their sessions back and the limit holds again
    Given a stream "s" with on_play auth
    And the backend allows token "t1" as user "u1" with X-Max-Sessions 1 and X-AuthDuration 60
    And the backend allows token "t2" as user "u1" with X-Max-Sessions 1 and X-AuthDuration 60
    When viewer "A" from 127.0.0.2 plays "s" on node A over the target's protocol with token "t1"
    Then viewer "A" is playing
    When the session store restarts empty
    And viewer "B" from 127.0.0.3 plays "s" on node B over the target's protocol with token "t2"
    Then viewer "B" is playing
    And viewer "A" is refused within 5 seconds

  @cluster @needs-cluster @needs-cluster-control @LIM-02 @LIM-07 @should @serial
  Scenario: A session that left but may still come back is handed back to a store that restarted empty
    User u2's older session on node A is refused once node A has handed its sessions back
    (oldest first), which tells when that has happened.
    Given a stream "s" with on_play auth
    And the backend allows token "t1" as user "u1" with X-Max-Sessions 1 and X-AuthDuration 60
    And the backend allows token "t2" as user "u1" with X-Max-Sessions 1 and X-AuthDuration 60
    And the backend allows token "t3" as user "u2" with X-Max-Sessions 1 and X-AuthDuration 60
    And the backend allows token "t4" as user "u2" with X-Max-Sessions 1 and X-AuthDuration 60
    When viewer "A" from 127.0.0.2 plays "s" on node A over MPEG-TS with token "t1"
    And viewer "A" leaves
    And viewer "C" from 127.0.0.4 plays "s" on node A over HLS with token "t3"
    And the session store restarts empty
    And viewer "B" from 127.0.0.3 plays "s" on node B over MPEG-TS with token "t2"
    And viewer "D" from 127.0.0.5 plays "s" on node B over HLS with token "t4"
    Then viewer "B" is playing
    And viewer "C" is refused within 5 seconds
    When viewer "A" plays again
    Then viewer "A" is denied
    And viewer "B" is still receiving media
    And the backend was asked 1 time for token "t1"

  @cluster @needs-cluster @needs-cluster-control @LIM-02 @LIM-07 @should @serial
  Scenario: A session past its auth duration is not handed back to a store that restarted empty
    User u2's older session on node A is refused once node A has handed its sessions back
    (oldest first), which tells when that has happened.
    Given a stream "s" with on_play auth
    And the backend allows token "t1" as user "u1" with X-Max-Sessions 1 and X-AuthDuration 2
    And the backend allows token "t2" as user "u1" with X-Max-Sessions 1 and X-AuthDuration 60
    And the backend allows token "t3" as user "u2" with X-Max-Sessions 1 and X-AuthDuration 60
    And the backend allows token "t4" as user "u2" with X-Max-Sessions 1 and X-AuthDuration 60
    When viewer "A" from 127.0.0.2 plays "s" on node A over HLS with token "t1"
    And the auth duration of token "t1" has passed
    And viewer "C" from 127.0.0.4 plays "s" on node A over HLS with token "t3"
    And the session store restarts empty
    And viewer "B" from 127.0.0.3 plays "s" on node B over HLS with token "t2"
    And viewer "D" from 127.0.0.5 plays "s" on node B over HLS with token "t4"
    Then viewer "C" is refused within 5 seconds
    When viewer "A" plays again
    Then viewer "A" is playing
    And the backend was asked 1 time for token "t1" with request_type "update_session"
