-- Push endpoints of several kinds (issue 18) and signed webhooks (issue 21, T3-M2).
-- kind: 1 webhook, 2 Web Push, 3 APNs, 4 FCM (chat.proto PushEndpointKind).
-- url stays the per-user identity of an endpoint: the webhook or Web Push URL,
-- or "apns:<token>" / "fcm:<token>" for device tokens.
ALTER TABLE push_endpoints
    ADD COLUMN kind SMALLINT NOT NULL DEFAULT 1,
    -- Webhooks: the Standard Webhooks secret (whsec_...) that signs deliveries.
    ADD COLUMN signing_secret TEXT NOT NULL DEFAULT '',
    -- Web Push: the subscription's p256dh and auth keys (base64url).
    ADD COLUMN p256dh TEXT NOT NULL DEFAULT '',
    ADD COLUMN auth_secret TEXT NOT NULL DEFAULT '',
    -- APNs / FCM: the device or registration token.
    ADD COLUMN device_token TEXT NOT NULL DEFAULT '';

-- Webhooks registered before signing get a secret nobody was told: their
-- owners re-register to learn one (docs/push.md). Unsigned deliveries never.
UPDATE push_endpoints
SET signing_secret = 'whsec_' || encode(
    decode(replace(gen_random_uuid()::text || gen_random_uuid()::text, '-', ''), 'hex'),
    'base64')
WHERE signing_secret = '';
