"""The user service: accounts, profiles, credentials, sessions."""
