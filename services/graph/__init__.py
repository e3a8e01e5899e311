"""The graph service: follows, follow requests, blocks, mutes and exact counts."""
