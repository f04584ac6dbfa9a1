-- Whether any staged submission was loaded before (only then are earlier answers looked up).
SELECT EXISTS (SELECT 1 FROM stage_owners WHERE loaded) AS loaded;
