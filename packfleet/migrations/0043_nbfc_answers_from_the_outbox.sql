-- A lender's answers are read from nbfc_outbox (its provider_message_id is the lender's reference),
-- so the copies planned in 0041 are not kept.
ALTER TABLE nbfc_outbox DROP COLUMN response;
ALTER TABLE nbfc_collection_reports DROP COLUMN nbfc_response;
ALTER TABLE finance_applications DROP COLUMN nbfc_reference;   -- the lender's reference is the outbox row's
