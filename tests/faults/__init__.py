"""The fault suite (issue 7): the app under restarts, kills, cut connections and overload."""
