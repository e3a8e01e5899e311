"""The feed service: home timelines (FOLLOWING and RANKED), impressions, feedback and trends."""
