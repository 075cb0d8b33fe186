-- Seed data to develop against: the original's two users and crud, plus a third user,
-- replies and an expired crud so that feeds, replies and expiry have something to show.

INSERT INTO public.users (display_name, handle, email, cognito_user_id)
VALUES
  ('Andrew Brown', 'andrewbrown', 'andrew@exampro.co', 'MOCK-andrewbrown'),
  ('Andrew Bayko', 'bayko', 'bayko@exampro.co', 'MOCK-bayko'),
  ('Londo Mollari', 'londo', 'lmollari@centari.com', 'MOCK-londo');

INSERT INTO public.activities (user_uuid, message, created_at, expires_at)
VALUES (
  (SELECT uuid FROM public.users WHERE users.handle = 'andrewbrown'),
  'This was imported as seed data!',
  current_timestamp - interval '10 minute',
  current_timestamp + interval '10 day'
);

INSERT INTO public.activities (user_uuid, message, created_at, expires_at)
VALUES (
  (SELECT uuid FROM public.users WHERE users.handle = 'bayko'),
  'Gone already: this crud expired yesterday.',
  current_timestamp - interval '2 day',
  current_timestamp - interval '1 day'
);

INSERT INTO public.activities (user_uuid, message, created_at, expires_at)
VALUES (
  (SELECT uuid FROM public.users WHERE users.handle = 'londo'),
  'Ah, arrogance and stupidity all in the same package. How efficient of you.',
  current_timestamp - interval '1 hour',
  current_timestamp + interval '7 day'
);

-- Two replies to the seed crud; the parent's replies_count says so.
INSERT INTO public.activities (user_uuid, message, reply_to_activity_uuid, created_at, expires_at)
SELECT replier.uuid, reply.message, parent.uuid,
       parent.created_at + reply.after, parent.expires_at
FROM (VALUES ('bayko', 'Imported, and it shows!', interval '1 minute'),
             ('londo', 'Welcome to the feed.', interval '2 minute'))
       AS reply (handle, message, after)
JOIN public.users replier ON replier.handle = reply.handle
CROSS JOIN (SELECT uuid, created_at, expires_at FROM public.activities
            WHERE message = 'This was imported as seed data!') parent;

UPDATE public.activities parent
SET replies_count = (SELECT count(*) FROM public.activities reply
                     WHERE reply.reply_to_activity_uuid = parent.uuid);
