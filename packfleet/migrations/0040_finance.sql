-- Finance: lenders, applications, loans and their EMI schedules, payments and their allocation,
-- reversals, the audit trail, and the overdue warnings and auto-disables.
-- Money is numeric(12, 2) (rupees and paise), rates numeric(5, 2) (annual %), due dates are dates.

-- NBFCs (lenders). Each signs its webhooks with its own secret; `api_base_url` NULL means the
-- configured default (PACKFLEET_NBFC_API_URL).
CREATE TABLE nbfc_lenders (
    id              bigserial PRIMARY KEY,
    code            text NOT NULL UNIQUE CHECK (code ~ '^[A-Za-z0-9_-]{1,32}$'),
    name            text NOT NULL,
    api_base_url    text CHECK (api_base_url ~ '^https?://'),
    webhook_secret  text NOT NULL CHECK (length(webhook_secret) >= 16),
    active          boolean NOT NULL DEFAULT true,
    created_at      timestamptz NOT NULL DEFAULT now()
);

-- An NBFC user acts for one lender (NULL: sees nothing).
ALTER TABLE users ADD COLUMN nbfc_id bigint REFERENCES nbfc_lenders (id);

-- Status: pending → approved | rejected; approved → disbursed (decided here), or
-- submitted → under_review → approved | rejected (decided by the NBFC it was sent to).
-- amount is what was asked; tenure_months and interest_rate are the terms (the approved ones once approved).
CREATE TABLE finance_applications (
    id                bigserial PRIMARY KEY,
    dealer_id         bigint NOT NULL REFERENCES dealers (id),
    consumer_id       bigint NOT NULL REFERENCES consumers (id),
    battery_id        bigint NOT NULL REFERENCES batteries (id),
    amount            numeric(12, 2) NOT NULL CHECK (amount > 0),
    tenure_months     integer NOT NULL CHECK (tenure_months BETWEEN 1 AND 84),
    interest_rate     numeric(5, 2) NOT NULL CHECK (interest_rate >= 0 AND interest_rate <= 60),
    status            text NOT NULL CHECK (status IN ('pending', 'submitted', 'under_review', 'approved',
                                                      'rejected', 'disbursed')),
    nbfc_id           bigint REFERENCES nbfc_lenders (id),   -- the lender it was sent to, if any
    nbfc_reference    text,                                  -- the lender's id for it
    approved_amount   numeric(12, 2) CHECK (approved_amount > 0),
    decision_note     text,
    decided_by        text,
    decided_at        timestamptz,
    submitted_at      timestamptz,
    disbursement_date date,
    created_by        text NOT NULL,
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX finance_applications_dealer_idx ON finance_applications (dealer_id, id);
CREATE INDEX finance_applications_consumer_idx ON finance_applications (consumer_id, id);
CREATE INDEX finance_applications_nbfc_idx ON finance_applications (nbfc_id, id) WHERE nbfc_id IS NOT NULL;
-- One undecided application per battery at a time.
CREATE UNIQUE INDEX finance_applications_open_battery_key ON finance_applications (battery_id)
    WHERE status IN ('pending', 'submitted', 'under_review');

-- A loan exists from approval: principal, terms, the EMI, and where its due dates run from.
CREATE TABLE loans (
    id                 bigserial PRIMARY KEY,
    application_id     bigint NOT NULL UNIQUE REFERENCES finance_applications (id),
    dealer_id          bigint NOT NULL REFERENCES dealers (id),
    consumer_id        bigint NOT NULL REFERENCES consumers (id),
    battery_id         bigint NOT NULL REFERENCES batteries (id),
    nbfc_id            bigint REFERENCES nbfc_lenders (id),
    principal          numeric(12, 2) NOT NULL CHECK (principal > 0),
    interest_rate      numeric(5, 2) NOT NULL CHECK (interest_rate >= 0 AND interest_rate <= 60),
    tenure_months      integer NOT NULL CHECK (tenure_months BETWEEN 1 AND 84),
    emi                numeric(12, 2) NOT NULL CHECK (emi > 0),
    schedule_start     date NOT NULL,     -- the approval date, then the disbursement date
    disbursement_date  date,
    status             text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'closed')),
    closed_at          timestamptz,
    created_at         timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX loans_dealer_idx ON loans (dealer_id, id);
CREATE INDEX loans_consumer_idx ON loans (consumer_id, id);
CREATE INDEX loans_nbfc_idx ON loans (nbfc_id, id) WHERE nbfc_id IS NOT NULL;
-- One running loan per battery.
CREATE UNIQUE INDEX loans_active_battery_key ON loans (battery_id) WHERE status = 'active';

-- The EMI schedule (reducing balance). paid_at is set when nothing of it is outstanding.
CREATE TABLE loan_instalments (
    id              bigserial PRIMARY KEY,
    loan_id         bigint NOT NULL REFERENCES loans (id),
    emi_number      integer NOT NULL CHECK (emi_number >= 1),
    due_date        date NOT NULL,
    principal       numeric(12, 2) NOT NULL CHECK (principal >= 0),
    interest        numeric(12, 2) NOT NULL CHECK (interest >= 0),
    amount          numeric(12, 2) GENERATED ALWAYS AS (principal + interest) STORED,
    penalty         numeric(12, 2) NOT NULL DEFAULT 0 CHECK (penalty >= 0),   -- late fee once charged
    principal_paid  numeric(12, 2) NOT NULL DEFAULT 0 CHECK (principal_paid BETWEEN 0 AND principal),
    interest_paid   numeric(12, 2) NOT NULL DEFAULT 0 CHECK (interest_paid BETWEEN 0 AND interest),
    penalty_paid    numeric(12, 2) NOT NULL DEFAULT 0 CHECK (penalty_paid BETWEEN 0 AND penalty),
    paid_at         timestamptz,
    UNIQUE (loan_id, emi_number)
);
-- Overdue lists and the auto-disable run read the unpaid instalments by due date.
CREATE INDEX loan_instalments_unpaid_due_idx ON loan_instalments (due_date, loan_id) WHERE paid_at IS NULL;

-- A payment's reference (receipt number, UPI transaction id) is unique per dealer: the same
-- reference twice is one payment. prepaid_principal is what went beyond the due instalments.
CREATE TABLE loan_payments (
    id                 bigserial PRIMARY KEY,
    loan_id            bigint NOT NULL REFERENCES loans (id),
    dealer_id          bigint NOT NULL REFERENCES dealers (id),
    reference          text NOT NULL CHECK (reference ~ '^[A-Za-z0-9][A-Za-z0-9/_.:-]{0,63}$'),
    amount             numeric(12, 2) NOT NULL CHECK (amount > 0),
    paid_on            date NOT NULL,
    method             text NOT NULL CHECK (method IN ('cash', 'upi', 'bank_transfer', 'cheque', 'card',
                                                       'nach', 'other')),
    prepaid_principal  numeric(12, 2) NOT NULL DEFAULT 0 CHECK (prepaid_principal >= 0),
    status             text NOT NULL DEFAULT 'recorded' CHECK (status IN ('recorded', 'reversed')),
    recorded_by        text NOT NULL,
    recorded_at        timestamptz NOT NULL DEFAULT now(),
    UNIQUE (dealer_id, reference)
);
CREATE INDEX loan_payments_loan_idx ON loan_payments (loan_id, id);
CREATE INDEX loan_payments_dealer_day_idx ON loan_payments (dealer_id, paid_on) WHERE status = 'recorded';
CREATE INDEX loan_payments_day_idx ON loan_payments (paid_on) WHERE status = 'recorded';

-- How each payment was split over instalments (penalty → interest → principal).
CREATE TABLE payment_allocations (
    id              bigserial PRIMARY KEY,
    payment_id      bigint NOT NULL REFERENCES loan_payments (id),
    instalment_id   bigint NOT NULL REFERENCES loan_instalments (id),
    penalty         numeric(12, 2) NOT NULL DEFAULT 0 CHECK (penalty >= 0),
    interest        numeric(12, 2) NOT NULL DEFAULT 0 CHECK (interest >= 0),
    principal       numeric(12, 2) NOT NULL DEFAULT 0 CHECK (principal >= 0)
);
CREATE INDEX payment_allocations_payment_idx ON payment_allocations (payment_id);
CREATE INDEX payment_allocations_instalment_idx ON payment_allocations (instalment_id);

-- A payment entered in error, taken back: one reversal per payment.
CREATE TABLE payment_reversals (
    id           bigserial PRIMARY KEY,
    payment_id   bigint NOT NULL UNIQUE REFERENCES loan_payments (id),
    reason       text NOT NULL,
    reversed_by  text NOT NULL,
    reversed_at  timestamptz NOT NULL DEFAULT now()
);

-- Audit trail of everything finance does: who, what, on which loan / instalment / payment /
-- battery / command, and the details.
CREATE TABLE finance_audit (
    id              bigserial PRIMARY KEY,
    at              timestamptz NOT NULL DEFAULT clock_timestamp(),
    actor           text NOT NULL,
    action          text NOT NULL,
    application_id  bigint REFERENCES finance_applications (id),
    loan_id         bigint REFERENCES loans (id),
    instalment_id   bigint REFERENCES loan_instalments (id),
    payment_id      bigint REFERENCES loan_payments (id),
    battery_id      bigint REFERENCES batteries (id),
    command_id      uuid,
    detail          jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX finance_audit_loan_idx ON finance_audit (loan_id, id) WHERE loan_id IS NOT NULL;
CREATE INDEX finance_audit_application_idx ON finance_audit (application_id, id)
    WHERE application_id IS NOT NULL;
CREATE INDEX finance_audit_battery_idx ON finance_audit (battery_id, id) WHERE battery_id IS NOT NULL;

-- One warning SMS per overdue instalment, before its battery may be disabled.
CREATE TABLE overdue_warnings (
    instalment_id  bigint PRIMARY KEY REFERENCES loan_instalments (id),
    loan_id        bigint NOT NULL REFERENCES loans (id),
    warned_at      timestamptz NOT NULL DEFAULT now(),
    disable_from   date NOT NULL     -- the first day the battery may be disabled for it
);
CREATE INDEX overdue_warnings_loan_idx ON overdue_warnings (loan_id);

-- A battery disabled for an overdue EMI. At most one open record per battery: a second run (or a
-- second process) finds it and issues nothing. spec 'charging' cuts recharging only; 'both' also
-- cuts discharge (only for a battery at rest). command_id is the latest disable command issued
-- for it; an enable goes out only while that command is still the battery's latest.
CREATE TABLE overdue_disables (
    id                      bigserial PRIMARY KEY,
    loan_id                 bigint NOT NULL REFERENCES loans (id),
    battery_id              bigint NOT NULL REFERENCES batteries (id),
    instalment_id           bigint NOT NULL REFERENCES loan_instalments (id),
    overdue_days            integer NOT NULL CHECK (overdue_days >= 0),
    spec                    text NOT NULL CHECK (spec IN ('charging', 'both')),
    command_id              uuid NOT NULL REFERENCES commands (id),
    disabled_at             timestamptz NOT NULL DEFAULT now(),
    released_at             timestamptz,
    release_reason          text CHECK (release_reason IN ('paid', 'operator', 'loan_closed')),
    enable_command_id       uuid REFERENCES commands (id),
    released_by_payment_id  bigint REFERENCES loan_payments (id)
);
CREATE UNIQUE INDEX overdue_disables_open_battery_key ON overdue_disables (battery_id) WHERE released_at IS NULL;
CREATE INDEX overdue_disables_loan_idx ON overdue_disables (loan_id);
