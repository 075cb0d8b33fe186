-- Seed data to develop against: the original's two users and crud, plus a third user, replies
-- and an expired crud. Loading it again changes nothing: each row goes in only when missing.

INSERT INTO public.users (display_name, handle, email, cognito_user_id)
VALUES
  ('Andrew Brown', 'andrewbrown', 'andrew@exampro.co', 'MOCK-andrewbrown'),
  ('Andrew Bayko', 'bayko', 'bayko@exampro.co', 'MOCK-bayko'),
  ('Londo Mollari', 'londo', 'lmollari@centari.com', 'MOCK-londo')
ON CONFLICT DO NOTHING;

INSERT INTO public.activities (user_uuid, message, created_at, expires_at)
SELECT author.uuid, crud.message,
       current_timestamp - crud.age, current_timestamp + crud.lifetime
FROM (VALUES ('andrewbrown', 'This was imported as seed data!',
              interval '10 minute', interval '10 day'),
             ('bayko', 'Gone already: this crud expired yesterday.',
              interval '2 day', interval '-1 day'),
             ('londo', 'Ah, arrogance and stupidity all in the same package. How efficient of you.',
              interval '1 hour', interval '7 day'))
       AS crud (handle, message, age, lifetime)
JOIN public.users author ON author.handle = crud.handle
WHERE NOT EXISTS (SELECT 1 FROM public.activities seeded
                  WHERE seeded.user_uuid = author.uuid AND seeded.message = crud.message
                    AND seeded.reply_to_activity_uuid IS NULL);

-- Two replies to the seed crud; the parent's replies_count says so. The parent is the seed's
-- own crud (andrewbrown's, not a reply, the first if he posted the same text again), never
-- another user's crud with the same text.
INSERT INTO public.activities (user_uuid, message, reply_to_activity_uuid, created_at, expires_at)
SELECT replier.uuid, reply.message, parent.uuid,
       parent.created_at + reply.after, parent.expires_at
FROM (VALUES ('bayko', 'Imported, and it shows!', interval '1 minute'),
             ('londo', 'Welcome to the feed.', interval '2 minute'))
       AS reply (handle, message, after)
JOIN public.users replier ON replier.handle = reply.handle
CROSS JOIN (SELECT seed.uuid, seed.created_at, seed.expires_at
            FROM public.activities seed JOIN public.users author ON author.uuid = seed.user_uuid
            WHERE author.handle = 'andrewbrown' AND seed.message = 'This was imported as seed data!'
              AND seed.reply_to_activity_uuid IS NULL
            ORDER BY seed.created_at, seed.uuid LIMIT 1) parent
WHERE NOT EXISTS (SELECT 1 FROM public.activities seeded
                  WHERE seeded.reply_to_activity_uuid = parent.uuid
                    AND seeded.user_uuid = replier.uuid AND seeded.message = reply.message);

-- Only that crud's count, and only when it is off: seeding again writes no row.
UPDATE public.activities parent
SET replies_count = counted.replies
FROM (SELECT seed.uuid, (SELECT count(*) FROM public.activities reply
                         WHERE reply.reply_to_activity_uuid = seed.uuid) AS replies
      FROM public.activities seed JOIN public.users author ON author.uuid = seed.user_uuid
      WHERE author.handle = 'andrewbrown' AND seed.message = 'This was imported as seed data!'
        AND seed.reply_to_activity_uuid IS NULL
      ORDER BY seed.created_at, seed.uuid LIMIT 1) counted
WHERE parent.uuid = counted.uuid AND parent.replies_count <> counted.replies;
