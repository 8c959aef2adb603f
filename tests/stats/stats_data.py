"""Published data sets of SCORING.md §E, typed in once for all statistics tests."""

import numpy as np

# §E.1 Shrout & Fleiss (1979): 6 targets × 4 judges.
SHROUT_FLEISS = np.array([[9, 2, 5, 8], [6, 1, 3, 2], [8, 4, 6, 8], [7, 1, 2, 6], [10, 5, 6, 9], [6, 2, 4, 7]], float)

# §E.2 SAS PROC FREQ example (rows rater 1, columns rater 2).
SAS_TABLE = np.array([[0, 4, 1], [0, 8, 0], [0, 1, 5]])

# §E.3 Fleiss (1971): 30 subjects × 6 raters, categories 1–5.
FLEISS_1971 = np.array([
    [4, 4, 4, 4, 4, 4], [2, 2, 2, 5, 5, 5], [2, 3, 3, 3, 3, 5], [5, 5, 5, 5, 5, 5], [2, 2, 2, 4, 4, 4],
    [1, 1, 3, 3, 3, 3], [3, 3, 3, 3, 5, 5], [1, 1, 3, 3, 3, 4], [1, 1, 4, 4, 4, 4], [5, 5, 5, 5, 5, 5],
    [1, 4, 4, 4, 4, 4], [1, 2, 4, 4, 4, 4], [2, 2, 2, 3, 3, 3], [1, 4, 4, 4, 4, 4], [2, 2, 4, 4, 4, 5],
    [3, 3, 3, 3, 3, 5], [1, 1, 1, 4, 5, 5], [1, 1, 1, 1, 1, 2], [2, 2, 4, 4, 4, 4], [1, 3, 3, 5, 5, 5],
    [5, 5, 5, 5, 5, 5], [2, 4, 4, 4, 4, 4], [2, 2, 4, 5, 5, 5], [1, 1, 4, 4, 4, 4], [1, 4, 4, 4, 4, 5],
    [2, 2, 2, 2, 2, 4], [1, 1, 1, 1, 5, 5], [2, 2, 4, 4, 4, 4], [1, 3, 3, 3, 3, 3], [5, 5, 5, 5, 5, 5]])

# §E.4 Bland & Altman (1986) PEFR, L/min.
WRIGHT_1 = np.array([494, 395, 516, 434, 476, 557, 413, 442, 650, 433, 417, 656, 267, 478, 178, 423, 427], float)
WRIGHT_2 = np.array([490, 397, 512, 401, 470, 611, 415, 431, 638, 429, 420, 633, 275, 492, 165, 372, 421], float)
MINI_1 = np.array([512, 430, 520, 428, 500, 600, 364, 380, 658, 445, 432, 626, 260, 477, 259, 350, 451], float)
MINI_2 = np.array([525, 415, 508, 444, 500, 625, 460, 390, 642, 432, 420, 605, 227, 467, 268, 370, 443], float)

# §E.5 Hanley & McNeil (1982): counts per rating 1..5.
HANLEY_NORMAL = [33, 6, 6, 11, 2]
HANLEY_ABNORMAL = [3, 2, 2, 11, 33]


def hanley_mcneil_data() -> tuple[np.ndarray, np.ndarray]:
    """(labels 1 = abnormal, ratings 1..5) of §E.5."""
    ratings = np.r_[np.repeat(np.arange(1, 6), HANLEY_NORMAL), np.repeat(np.arange(1, 6), HANLEY_ABNORMAL)]
    labels = np.r_[np.zeros(sum(HANLEY_NORMAL)), np.ones(sum(HANLEY_ABNORMAL))]
    return labels, ratings


# §E.7 Stata fuel data.
MPG1 = np.array([20, 23, 21, 25, 18, 17, 18, 24, 20, 24, 23, 19], float)
MPG2 = np.array([24, 25, 21, 22, 23, 18, 17, 28, 24, 27, 21, 23], float)

# §E.8 statpsych example.
E8_Y = np.array([21, 4, 9, 12, 35, 18, 10, 22, 24, 1, 6, 8, 13, 16, 19], float)
E8_X = np.array([67, 28, 30, 28, 52, 40, 25, 37, 44, 10, 14, 20, 28, 40, 51], float)
