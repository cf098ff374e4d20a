"""Finance: applications, loans and EMI schedules, payments, overdue and auto-disable."""
