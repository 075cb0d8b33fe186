// What the reader has typed in a post or reply box and not sent yet, kept in this page's
// memory until it is posted. A box is drawn again empty by "Try again", by the browser
// coming back online, by Back and Forward, and after signing in again once the sign-in
// has run out: each of those lost the draft. Memory, not sessionStorage: the tab's
// storage keeps no one's unsent words (a reload starts the box empty, as before).

const drafts = new Map(); // "<handle> <box>" → text
const MOST = 20; // boxes remembered at most; the oldest go first

// The box `where` names ("compose", "reply:<uuid>"), `who`'s (the signed-in handle),
// gets its draft back and keeps it from now on; sent (the box emptied, an input
// event), it is forgotten.
export function keepDraft(textarea, who, where) {
  const name = `${who} ${where}`;
  const saved = drafts.get(name);
  if (saved && !textarea.value) textarea.value = saved;
  textarea.addEventListener("input", () => {
    drafts.delete(name); // set again last: the newest
    if (textarea.value) drafts.set(name, textarea.value);
    for (const oldest of drafts.keys()) {
      if (drafts.size <= MOST) break;
      drafts.delete(oldest);
    }
  });
}

// Signing out: what one reader typed is not left for the next in this tab.
export const forgetDrafts = () => drafts.clear();
