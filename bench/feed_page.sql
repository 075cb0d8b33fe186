-- A home-feed page as the original Cruddur returns it: newest first, with the author.
SELECT activities.uuid, users.display_name, users.handle, activities.message,
       activities.replies_count, activities.reposts_count, activities.likes_count,
       activities.reply_to_activity_uuid, activities.expires_at, activities.created_at
FROM public.activities
JOIN public.users ON users.uuid = activities.user_uuid
WHERE activities.expires_at > now()
ORDER BY activities.created_at DESC, activities.uuid DESC
LIMIT %(limit)s
