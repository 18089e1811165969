"""The public dataset repo on the Hub: where every file lives (layout), what a row must satisfy
(rules, validation, dedup), adding data as pull requests (contribute), maintainers' review and
merge (review), and the dataset card (card, stats).
"""
