"""Contacts messages (seed 004 'Contacts message' and the property tables after it)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from dispatcher.messages.base import WireModel, rule_error


class Address(WireModel):
    city: str | None = None
    country: str | None = None
    country_code: str | None = Field(default=None, alias="countryCode")
    state: str | None = None
    street: str | None = None
    type: str | None = None  # "Eg. HOME, WORK": an open set, so not an enum
    zip: str | None = None


class Email(WireModel):
    email: str | None = None
    type: str | None = None


class Name(WireModel):
    formatted_name: str = Field(alias="formattedName", min_length=1)
    first_name: str | None = Field(default=None, alias="firstName")
    last_name: str | None = Field(default=None, alias="lastName")
    middle_name: str | None = Field(default=None, alias="middleName")
    suffix: str | None = None
    prefix: str | None = None

    @model_validator(mode="after")
    def _another_part(self) -> Name:
        # Seed 004 'Name': "At least one of the optional parameters needs to be included
        # along with the formattedName parameter."
        parts = (self.first_name, self.last_name, self.middle_name, self.suffix, self.prefix)
        if all(part is None for part in parts):
            raise rule_error(
                (),
                "give firstName, lastName, middleName, suffix or prefix with formattedName",
            )
        return self


class Org(WireModel):
    company: str | None = None
    department: str | None = None
    title: str | None = None


class Phone(WireModel):
    phone: str | None = None
    type: str | None = None
    wa_id: str | None = Field(default=None, alias="waId")


class Url(WireModel):
    url: str | None = None
    type: str | None = None


class Contact(WireModel):
    addresses: list[Address] | None = None
    birthday: str | None = None
    emails: list[Email] | None = None
    name: Name | None = None
    org: Org | None = None
    phones: list[Phone] | None = None
    urls: list[Url] | None = None


class ContactsMessage(WireModel):
    type: Literal["contacts"] = "contacts"
    contacts: list[Contact] = Field(min_length=1)
