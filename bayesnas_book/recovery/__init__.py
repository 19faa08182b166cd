"""Architecture recovery with a known answer: a planted cell, its teacher, the search's score."""
