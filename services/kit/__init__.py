"""The shared kit: everything every socialmesh service needs, in one place."""
