//! shmex
