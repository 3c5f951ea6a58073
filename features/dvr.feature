@needs-dvr
Feature: Archive playback and exports
  A stream with a DVR archive is played back and downloaded under the same authorization as
  live playback: the backend is asked with dvr=true (DVR-01), and a download of an archive
  fragment as MP4 (archive-FROM-DUR.mp4) or MPEG-TS (archive-FROM-DUR.ts) is a play session
  like any other (DVR-02). The backend's allowed_dvr_ranges bounds what a session may read: no
  such field means the whole archive, an empty list none of it; opened_at is inclusive,
  closed_at exclusive, and either may be left out (ADV-02). Seconds count from when the stream
  was put in place.

  Background:
    Given a stream "s" with a DVR archive and on_play auth
    And stream "s" has recorded 7 seconds of archive

  @DVR-01 @must
  Scenario: Archive playback over HLS is authorized with dvr=true
    Given the backend allows token "t1"
    When viewer "A" from 127.0.0.2 plays seconds 1 to 4 of the archive of "s" over HLS with token "t1"
    Then viewer "A" is playing
    And the backend's new_session call for token "t1" carried
      | parameter | value      |
      | name      | stream "s" |
      | dvr       | true       |

  @DVR-01 @must
  Scenario: A denied viewer gets none of the archive
    Given the backend denies token "t1"
    When viewer "A" from 127.0.0.2 plays seconds 1 to 4 of the archive of "s" over HLS with token "t1"
    Then viewer "A" is denied
    And viewer "A" received no media

  @DVR-02 @must
  Scenario Outline: A download as <format> is a play session authorized with dvr=true
    Given the backend allows token "t1"
    When viewer "A" from 127.0.0.2 downloads seconds 1 to 4 of the archive of "s" as <format> with token "t1"
    Then viewer "A" is playing
    And the backend's new_session call for token "t1" carried
      | parameter    | value       |
      | name         | stream "s"  |
      | request_type | new_session |
      | dvr          | true        |

    Examples:
      | format  |
      | MP4     |
      | MPEG-TS |

  @DVR-02 @must
  Scenario Outline: A denied download as <format> carries no media
    Given the backend denies token "t1"
    When viewer "A" from 127.0.0.2 downloads seconds 1 to 4 of the archive of "s" as <format> with token "t1"
    Then viewer "A" is denied
    And viewer "A" received no media

    Examples:
      | format  |
      | MP4     |
      | MPEG-TS |

  @DVR-02 @info
  Scenario Outline: The proto of a download as <format>
    Given the backend allows token "t1"
    When viewer "A" from 127.0.0.2 downloads seconds 1 to 4 of the archive of "s" as <format> with token "t1"
    Then the backend's new_session call for token "t1" carried
      | parameter | value   |
      | proto     | <proto> |

    Examples:
      | format  | proto  |
      | MP4     | mp4    |
      | MPEG-TS | tshttp |

  @ADV-02 @must
  Scenario: Without allowed_dvr_ranges the whole archive may be read
    Given the backend allows token "t1"
    When viewer "A" from 127.0.0.2 downloads seconds 0 to 5 of the archive of "s" as MPEG-TS with token "t1"
    Then viewer "A" is playing

  @ADV-02 @must
  Scenario: An empty allowed_dvr_ranges closes the archive, not the live stream
    Given the backend lets token "t1" read no archive
    When viewer "A" from 127.0.0.2 plays seconds 1 to 4 of the archive of "s" over HLS with token "t1"
    And viewer "B" from 127.0.0.3 plays "s" over HLS with token "t1"
    Then viewer "A" is denied
    And viewer "A" received no media
    And viewer "B" is playing

  @ADV-02 @must
  Scenario Outline: Only a range inside allowed_dvr_ranges is served (<case>)
    Given the backend lets token "t1" read the archive of "s" <allowed>
    When viewer "A" from 127.0.0.2 downloads seconds <from> to <to> of the archive of "s" as MP4 with token "t1"
    Then viewer "A" is <outcome>

    Examples:
      | case                            | allowed                   | from | to | outcome |
      | exactly the allowed range       | from second 1 to second 4 | 1    | 4  | playing |
      | starting before opened_at       | from second 2 to second 4 | 1    | 4  | denied  |
      | reaching closed_at, exclusive   | from second 1 to second 3 | 1    | 4  | denied  |
      | no closed_at                    | from second 1 on          | 1    | 5  | playing |
      | no closed_at, starting before   | from second 2 on          | 1    | 5  | denied  |
      | no opened_at                    | up to second 5            | 0    | 5  | playing |
      | no opened_at, ending after      | up to second 4            | 0    | 5  | denied  |

  @ADV-02 @must
  Scenario: A range outside allowed_dvr_ranges gets no media
    Given the backend lets token "t1" read the archive of "s" from second 1 to second 3
    When viewer "A" from 127.0.0.2 downloads seconds 2 to 5 of the archive of "s" as MPEG-TS with token "t1"
    Then viewer "A" is denied
    And viewer "A" received no media
