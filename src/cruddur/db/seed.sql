-- Seed data to develop against: the original's two users and crud, plus a third user, replies
-- and an expired crud. Loading it again changes nothing: each row goes in only when missing.
-- Each crud's author is the seed's own user: the row with the handle (in any case) and the
-- seed's email (a row `users sync-cognito` gave a Cognito user keeps both). A handle that
-- someone else has keeps them: that seed user, its cruds and the replies to them are left
-- out (they were posted as that user).

INSERT INTO public.users (display_name, handle, email, cognito_user_id)
VALUES
  ('Andrew Brown', 'andrewbrown', 'andrew@exampro.co', 'MOCK-andrewbrown'),
  ('Andrew Bayko', 'bayko', 'bayko@exampro.co', 'MOCK-bayko'),
  ('Londo Mollari', 'londo', 'lmollari@centari.com', 'MOCK-londo')
ON CONFLICT DO NOTHING;

-- The seed crud has a fixed uuid: its replies find it by that, never by its text, which
-- anyone may post. A crud goes in only when missing: neither its uuid nor its author and
-- text are there yet (so a seed crud from before the fixed uuid is not doubled either).
INSERT INTO public.activities (uuid, user_uuid, message, created_at, expires_at)
SELECT coalesce(crud.uuid, uuid_generate_v4()), author.uuid, crud.message,
       current_timestamp - crud.age, current_timestamp + crud.lifetime
FROM (VALUES ('5eed0000-0000-4000-8000-000000000001'::uuid, 'andrewbrown',
              'This was imported as seed data!', interval '10 minute', interval '10 day'),
             (NULL, 'bayko', 'Gone already: this crud expired yesterday.',
              interval '2 day', interval '-1 day'),
             (NULL, 'londo',
              'Ah, arrogance and stupidity all in the same package. How efficient of you.',
              interval '1 hour', interval '7 day'))
       AS crud (uuid, handle, message, age, lifetime)
JOIN (VALUES ('andrewbrown', 'andrew@exampro.co'), ('bayko', 'bayko@exampro.co'),
             ('londo', 'lmollari@centari.com')) AS seed_user (handle, email)
  ON seed_user.handle = crud.handle
JOIN public.users author
  ON lower(author.handle) = seed_user.handle AND lower(btrim(author.email)) = seed_user.email
WHERE NOT EXISTS (SELECT 1 FROM public.activities seeded
                  WHERE seeded.uuid = crud.uuid
                     OR (seeded.user_uuid = author.uuid AND seeded.message = crud.message
                         AND seeded.reply_to_activity_uuid IS NULL));

-- Two replies to the seed crud (by its uuid); the parent's replies_count says so.
INSERT INTO public.activities (user_uuid, message, reply_to_activity_uuid, created_at, expires_at)
SELECT replier.uuid, reply.message, parent.uuid,
       parent.created_at + reply.after, parent.expires_at
FROM (VALUES ('bayko', 'Imported, and it shows!', interval '1 minute'),
             ('londo', 'Welcome to the feed.', interval '2 minute'))
       AS reply (handle, message, after)
JOIN (VALUES ('bayko', 'bayko@exampro.co'), ('londo', 'lmollari@centari.com'))
       AS seed_user (handle, email)
  ON seed_user.handle = reply.handle
JOIN public.users replier
  ON lower(replier.handle) = seed_user.handle AND lower(btrim(replier.email)) = seed_user.email
JOIN public.activities parent ON parent.uuid = '5eed0000-0000-4000-8000-000000000001'
WHERE NOT EXISTS (SELECT 1 FROM public.activities seeded
                  WHERE seeded.reply_to_activity_uuid = parent.uuid
                    AND seeded.user_uuid = replier.uuid AND seeded.message = reply.message);

-- Only that crud's count, and only when it is off: seeding again writes no row.
UPDATE public.activities parent
SET replies_count = counted.replies
FROM (SELECT count(*) AS replies FROM public.activities reply
      WHERE reply.reply_to_activity_uuid = '5eed0000-0000-4000-8000-000000000001') counted
WHERE parent.uuid = '5eed0000-0000-4000-8000-000000000001'
  AND parent.replies_count <> counted.replies;
