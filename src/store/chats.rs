//! AI SDK chat ids (`chat_aliases`): the thread a chat id names in a
//! project, and the thread made for a chat id on its first message. A chat
//! id that is the id of a thread of the project names that thread as it is.

use chrono::Utc;
use sea_orm::{
    sea_query::OnConflict, ActiveModelTrait, ActiveValue::Set, ColumnTrait, EntityTrait, QueryFilter, TransactionTrait,
};
use uuid::Uuid;

use super::{convert, entities::chat_alias, Store, StoreError};
use crate::domain::{new_id, Thread};

impl Store {
    /// The thread chat `chat_id` names in project `project_id`: the thread
    /// of that id, else the one recorded for the id.
    pub async fn chat_thread(&self, project_id: Uuid, chat_id: &str) -> Result<Option<Thread>, StoreError> {
        if let Ok(id) = Uuid::try_parse(chat_id) {
            if let Some(thread) = self.get_thread(project_id, id).await? {
                return Ok(Some(thread));
            }
        }
        let alias = chat_alias::Entity::find()
            .filter(chat_alias::Column::ProjectId.eq(project_id))
            .filter(chat_alias::Column::ChatId.eq(chat_id))
            .one(&self.db)
            .await?;
        match alias {
            Some(alias) => Ok(self.get_thread(project_id, alias.thread_id).await?),
            None => Ok(None),
        }
    }

    /// The thread of chat `chat_id`, created with `title` (and the id
    /// recorded, in one transaction) if the chat has none yet. Two first
    /// messages racing for one new id end on the same thread: the loser's
    /// insert finds the id taken, rolls back and reads the winner's.
    pub async fn chat_thread_or_create(
        &self,
        project_id: Uuid,
        chat_id: &str,
        title: Option<String>,
    ) -> Result<Thread, StoreError> {
        if let Some(thread) = self.chat_thread(project_id, chat_id).await? {
            return Ok(thread);
        }
        let now = Utc::now();
        let txn = self.db.begin().await?;
        let settings = crate::domain::ThreadSettings { title, ..Default::default() };
        let row = convert::thread_row(&settings.into_thread(new_id(), project_id, now)).insert(&txn).await?;
        let alias = chat_alias::ActiveModel {
            project_id: Set(project_id),
            chat_id: Set(chat_id.to_owned()),
            thread_id: Set(row.id),
            created_at: Set(now),
        };
        let inserted = chat_alias::Entity::insert(alias)
            .on_conflict(
                OnConflict::columns([chat_alias::Column::ProjectId, chat_alias::Column::ChatId])
                    .do_nothing()
                    .to_owned(),
            )
            .exec_without_returning(&txn)
            .await?;
        if inserted == 0 {
            txn.rollback().await?;
            return self
                .chat_thread(project_id, chat_id)
                .await?
                .ok_or_else(|| StoreError::Corrupt(format!("chat {chat_id:?} is taken but names no thread")));
        }
        txn.commit().await?;
        convert::thread(row)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{config::DatabaseSettings, store::WriteOp};

    async fn store(dir: &std::path::Path) -> Store {
        let settings = DatabaseSettings {
            database_url: None,
            data_dir: dir.to_owned(),
            flush_interval_ms: 50,
            db_max_connections: 4,
            db_min_connections: 1,
        };
        Store::connect(&settings).await.unwrap()
    }

    #[tokio::test]
    async fn a_chat_id_names_one_thread_per_project_and_goes_with_it() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(dir.path()).await;
        let (a, b) = (store.create_project("a").await.unwrap(), store.create_project("b").await.unwrap());
        assert!(store.chat_thread(a.id, "chat-1").await.unwrap().is_none());
        let first = store.chat_thread_or_create(a.id, "chat-1", Some("hi".into())).await.unwrap();
        assert_eq!(first.title.as_deref(), Some("hi"));
        let again = store.chat_thread_or_create(a.id, "chat-1", None).await.unwrap();
        assert_eq!(again.id, first.id, "the same id finds the same thread");
        let other = store.chat_thread_or_create(b.id, "chat-1", None).await.unwrap();
        assert_ne!(other.id, first.id, "ids are per project");
        // A thread's own id names it, in its project only.
        let id = first.id.to_string();
        assert_eq!(store.chat_thread(a.id, &id).await.unwrap().map(|t| t.id), Some(first.id));
        assert!(store.chat_thread(b.id, &id).await.unwrap().is_none());
        store.write_batch(&[WriteOp::DeleteThread(first.id)]).await.unwrap();
        assert!(store.chat_thread(a.id, "chat-1").await.unwrap().is_none(), "the id went with its thread");
        let fresh = store.chat_thread_or_create(a.id, "chat-1", None).await.unwrap();
        assert_ne!(fresh.id, first.id);
    }

    #[tokio::test]
    async fn first_messages_racing_for_one_id_end_on_one_thread() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(dir.path()).await;
        let project = store.create_project("p").await.unwrap();
        let racers = (0..4).map(|_| {
            let store = store.clone();
            tokio::spawn(async move { store.chat_thread_or_create(project.id, "raced", None).await.unwrap().id })
        });
        let ids: Vec<Uuid> = futures_util::future::join_all(racers).await.into_iter().map(Result::unwrap).collect();
        assert!(ids.iter().all(|id| *id == ids[0]), "{ids:?}");
    }
}
