"""Questions about the Mueller report, volume II (../shared/corpus/mueller-report-vol-2.pdf), one per
section of its table of contents, written in other words than the section's title.

Each entry: (first page of the section, as the PDF's outline gives it, question). A hit is a
chunk whose pages overlap the section's pages: from its first page to the first page of the next
outline entry."""

QUESTIONS: list[tuple[int, str]] = [
    (14, "Could the chief executive argue that laws against interfering with inquiries do not reach him?"),
    (17, "What elements must prosecutors prove for the crime of impeding a proceeding?"),
    (20, "Why did the investigators decline to say whether the sitting head of state committed a crime?"),
    (25, "news stories claiming ties between the candidate's team and Moscow"),
    (26, "how the candidate's team responded when a leak site published stolen Democratic messages"),
    (33, "phone call with the envoy about penalties imposed by the outgoing administration"),
    (37, "the incoming adviser lied to agents and aides about his calls with the diplomat"),
    (39, "acting attorney general warns the counsel's office that the adviser could be blackmailed"),
    (44, "the national security adviser steps down after less than a month"),
    (46, "asking the bureau chief to drop the case against his former adviser"),
    (50, "deputy adviser asked to write a letter saying the boss had not ordered the calls with the envoy"),
    (56, "the top law enforcement official steps aside from overseeing the inquiry"),
    (60, "bureau head tells the House intelligence panel that the inquiry exists"),
    (63, "asking spy agency chiefs to say in public that he had no ties to Moscow"),
    (65, "calls asking the bureau head to remove the shadow hanging over the administration"),
    (72, "firing the bureau director and the deputy attorney general's memo used as the reason"),
    (86, "how he responded when the deputy attorney general named an outside prosecutor"),
    (88, "claims that Mueller was biased because of golf club fees and a job interview"),
    (92, "McGahn told to call Rosenstein to get Mueller fired, and threatening to quit"),
    (98, "former campaign manager asked to carry a note telling Sessions to limit the inquiry to future elections"),
    (102, "chief of staff told to get the attorney general to quit"),
    (108, "Hicks and aides told to keep the Veselnitskaya messages away from reporters"),
    (109, "drafting on Air Force One a statement saying the gathering was about adoptions"),
    (115, "pressure on the attorney general to take back control of the inquiry"),
    (122, "asking the lawyer to write a letter denying the Times story about an attempt to oust Mueller"),
    (130, "praise and pardon talk for the jailed former campaign chairman"),
    (140, "plans for a skyscraper in the Russian capital during the race"),
    (145, "personal lawyer lies to lawmakers about how long the tower deal talks lasted"),
    (150, "reassurance to his fixer after agents searched his office and home"),
    (162, "patterns across the episodes: intent, links to proceedings, public and private acts"),
    (167, "the residual clause of the statute covers any corrupt act that impedes proceedings"),
    (172, "what the record of the Sarbanes-Oxley act says about the provision"),
    (180, "can lawmakers bar the chief executive from corruptly using the powers of his office"),
    (188, "would a criminal inquiry deter the chief executive from doing his job"),
]
