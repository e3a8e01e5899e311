"""`python -m services.webapp`: what `socialmesh serve web` runs (`socialmesh up` starts it so)."""

from services.webapp.server import main

main()
