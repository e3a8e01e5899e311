"""Chat: conversations, messages, read marks, typing, presence and notifications, streamed."""
