-- A fragment, not a query: the columns of a crud as the API shows it, in the order of
-- its JSON's keys. Every query that answers with cruds takes them in from here
-- (`{{activities/columns}}`, db/templates.py), so the shape is written once. The query
-- names the activity's row `activity` and its author's `author` (a row of public.users,
-- or anything with display_name and handle).
activity.uuid,
author.display_name,
author.handle,
activity.message,
activity.replies_count,
activity.reposts_count,
activity.likes_count,
activity.reply_to_activity_uuid,
activity.expires_at,
activity.created_at
