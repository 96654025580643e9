"""Campaigns: what a valid campaign is (rules, grouping), and storing and editing them."""
