-- 26: announcing released chats (issue 16): a member chooses whether the co-op's microblog and
--     feed may announce their released records (1, the default, lets them; 0 keeps them out of
--     every preview), and the admins highlight records (the seq, when, by whom) so previews put
--     them first and the Atom feed carries them.
-- name: members choose announcements; admins highlight records

ALTER TABLE members ADD COLUMN announce INTEGER NOT NULL DEFAULT 1;
CREATE TABLE highlights (
  seq INTEGER PRIMARY KEY,
  at INTEGER NOT NULL,
  actor TEXT NOT NULL
) WITHOUT ROWID;
