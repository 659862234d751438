"""Copy logic (pure): labels, links, intents, symbol mapping, sizing, the planner."""
